"""The parts of ``recolor evaluate``; :mod:`recolor.evaluate` puts them together and is the API.

* :mod:`.settings`     what to evaluate (:class:`EvalSettings`) and the one-line error
* :mod:`.catalogue`    the metric table: keys, labels, which ``--metric`` option selects each
* :mod:`.accumulators` one small accumulator per metric (``update`` per batch, ``result`` per row),
                       and the map from ``--metric`` options to them
* :mod:`.photos`       the ground-truth photos, their crops and the predictions matched to them
* :mod:`.contenders`   the rows to score: loaded models and predictions folders
* :mod:`.judges`       the classifier and backbone of the classifier-based metrics, and the labels
* :mod:`.result`       the result, its JSON and its table cells
* :mod:`.report`       the HTML report (page, bar charts, sample photos) and the printed tables

The metric formulas themselves are the pure functions of :mod:`recolor.metrics`.

Adding a figure: its row in ``catalogue.METRICS`` (key, label, which ``--metric`` option selects
it), and an accumulator for that key in the option's entry of ``accumulators.ACCUMULATORS``.
"""

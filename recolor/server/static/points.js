// The points of the page of `recolor serve`: placing, dragging, selecting, deleting, undoing, and
// the model's suggestions for a point. Loaded before app.js, whose globals (state, api, changed...) it uses when called.
"use strict";

// --- points -----------------------------------------------------------------------------------

function renderPoints() {
  const layer = $("points"), list = $("point-list");
  layer.replaceChildren();
  list.replaceChildren();
  state.points.forEach((point, index) => {
    const marker = document.createElement("div");
    marker.className = "point" + (index === state.selected ? " selected" : "");
    marker.style.left = `${((point.x + 0.5) / state.photo.width) * 100}%`;
    marker.style.top = `${((point.y + 0.5) / state.photo.height) * 100}%`;
    marker.style.background = point.color || "transparent";
    marker.dataset.index = String(index);
    layer.append(marker);
    const item = document.createElement("li");
    item.textContent = `${point.color || "…"} at ${point.x}, ${point.y}`;
    item.className = index === state.selected ? "selected" : "";
    item.addEventListener("click", () => select(index));
    list.append(item);
  });
  const point = state.points[state.selected];
  $("point-editor").hidden = !point;
  $("no-point").hidden = Boolean(point);
  if (point) {
    $("point-where").textContent = `at ${point.x}, ${point.y} of ${state.photo.width}×${state.photo.height}`;
    if (point.color && $("picker").value !== point.color) $("picker").value = point.color;
  }
}

function select(index) {
  state.selected = index;
  renderPoints();
  suggest();
}

function photoPosition(event) {
  const box = $("stage").getBoundingClientRect();
  const x = Math.floor(((event.clientX - box.left) / box.width) * state.photo.width);
  const y = Math.floor(((event.clientY - box.top) / box.height) * state.photo.height);
  return { x: Math.min(state.photo.width - 1, Math.max(0, x)), y: Math.min(state.photo.height - 1, Math.max(0, y)) };
}

async function suggest() {
  const index = state.selected, point = state.points[index];
  const box = $("suggestions");
  box.replaceChildren();
  if (!point) return;
  if (!state.info.suggests) {
    if (!point.color) { point.color = $("picker").value; changed(); }
    return;
  }
  try {
    const form = requestForm({ x: point.x, y: point.y, k: 6, hints: hintsJSON(index) });
    const { suggestions } = await (await api("/api/suggest", form)).json();
    if (state.points[index] !== point) return;
    for (const { color, probability } of suggestions) {
      const swatch = document.createElement("button");
      swatch.type = "button";
      swatch.className = "swatch";
      swatch.style.background = color;
      swatch.title = `${color} (${Math.round(probability * 100)}%)`;
      swatch.addEventListener("click", () => { remember(); point.color = color; changed(); });
      box.append(swatch);
    }
    if (!point.color && suggestions.length) { point.color = suggestions[0].color; changed(); }
  } catch (error) {
    setStatus(error.message, true);
    if (!point.color) { point.color = $("picker").value; changed(); }
  }
}

function setupStage() {
  const stage = $("stage");
  let drag = null;
  stage.addEventListener("pointerdown", (event) => {
    if (!state.photo || event.button !== 0) return;
    const marker = event.target.closest(".point");
    remember();
    if (marker) {
      state.selected = Number(marker.dataset.index);
    } else {
      state.points.push({ ...photoPosition(event), color: null });
      state.selected = state.points.length - 1;
    }
    drag = { index: state.selected, moved: false, added: !marker };
    stage.setPointerCapture(event.pointerId);
    renderPoints();
  });
  stage.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const point = state.points[drag.index], where = photoPosition(event);
    if (point && (where.x !== point.x || where.y !== point.y)) {
      Object.assign(point, where);
      drag.moved = true;
      renderPoints();
    }
  });
  const finish = () => {
    if (!drag) return;
    const { moved, added } = drag;
    drag = null;
    if (!moved && !added) state.history.pop(); // a plain selection changes nothing to undo
    if (moved || added) changed();
    suggest();
  };
  stage.addEventListener("pointerup", finish);
  stage.addEventListener("pointercancel", finish);
}

function deleteSelected() {
  if (state.selected < 0) return;
  remember();
  state.points.splice(state.selected, 1);
  state.selected = -1;
  changed();
}

function undo() {
  const last = state.history.pop();
  if (!last) return;
  state.points = last.points;
  state.reference = last.reference;
  state.selected = Math.min(last.selected, state.points.length - 1);
  $("reference").value = state.reference;
  changed();
}


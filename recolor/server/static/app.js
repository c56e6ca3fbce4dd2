// The page of `recolor serve`: no framework, no build step. It speaks only the HTTP API that
// README.md documents (/api/open, /api/preview, /api/suggest, /api/colorize, /api/hints ...).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null,
  photo: null, // {id, name, width, height, inFolder, folderId, file}
  points: [], // [{x, y, color}] in pixels of the photo; color "#rrggbb" (null while its suggestion is on its way)
  selected: -1,
  reference: "", // an open photo's id or a folder photo's id; "" for none
  history: [],
  editing: false,
  version: 0,
  preview: null, // the AbortController of the preview in flight
  timer: 0,
  folderPhotos: [],
  warning: "", // a problem worth showing until another photo is opened (a sidecar that could not be read)
};

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

async function api(path, form, options = {}) {
  const response = await fetch(path, form ? { method: "POST", body: form, ...options } : options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new ApiError(message, response.status);
  }
  return response;
}

function setStatus(text, error = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", error);
}

function hintsJSON(except = -1) {
  const points = state.points
    .filter((p, i) => i !== except && p.color)
    .map((p) => ({ x: p.x, y: p.y, color: p.color }));
  return JSON.stringify({ points });
}

function requestForm(extra = {}) {
  const form = new FormData();
  form.append("photo", state.photo.id);
  if (state.reference) form.append("reference_id", state.reference);
  for (const [key, value] of Object.entries(extra)) form.append(key, value);
  return form;
}

// --- opening photos ---------------------------------------------------------------------------

async function openFile(file) {
  const form = new FormData();
  form.append("image", file, file.name);
  setStatus(`opening ${file.name}…`);
  try {
    const opened = await (await api("/api/open", form)).json();
    setPhoto(opened, { file });
  } catch (error) { setStatus(error.message, true); }
}

async function openFolderPhoto(id) {
  const form = new FormData();
  form.append("id", id);
  setStatus("opening…");
  try {
    const opened = await (await api("/api/open", form)).json();
    setPhoto(opened, { folderId: id });
  } catch (error) { setStatus(error.message, true); }
}

async function reopen() {
  // the server keeps a few photos open; one that it let go is opened again from where it came
  const form = new FormData();
  if (state.photo.file) form.append("image", state.photo.file, state.photo.file.name);
  else form.append("id", state.photo.folderId);
  const opened = await (await api("/api/open", form)).json();
  state.photo.id = opened.photo;
}

function setPhoto(opened, source) {
  state.photo = { id: opened.photo, name: opened.name, width: opened.width, height: opened.height,
    inFolder: opened.in_folder, ...source };
  state.points = (opened.hints && opened.hints.points) || [];
  state.reference = (opened.hints && opened.hints.reference_id) || "";
  state.selected = -1;
  state.history = [];
  state.warning = opened.hints_error ? `hints not loaded: ${opened.hints_error}` : "";
  $("drop").hidden = true;
  $("stage").hidden = false;
  $("slider-row").hidden = false;
  $("download").disabled = false;
  $("reference").disabled = !state.info.takes_hints;
  $("save-hints").hidden = !opened.in_folder;
  $("reference").value = state.reference;
  document.querySelectorAll("#photos li").forEach((li) => li.classList.toggle("current", li.dataset.id === source.folderId));
  layout();
  $("after").removeAttribute("src");
  loadBefore();
  changed();
}

function layout() {
  if (!state.photo) return;
  const workspace = $("workspace");
  const width = workspace.clientWidth - 24, height = workspace.clientHeight - 60;
  const scale = Math.min(width / state.photo.width, height / state.photo.height, 2);
  $("stage").style.width = `${Math.max(1, Math.floor(state.photo.width * scale))}px`;
  $("stage").style.height = `${Math.max(1, Math.floor(state.photo.height * scale))}px`;
}

function maxSide() {
  const stage = $("stage").getBoundingClientRect();
  return Math.min(2048, Math.max(64, Math.ceil(Math.max(stage.width, stage.height) * (window.devicePixelRatio || 1))));
}

function loadBefore() {
  $("before").src = `/api/before?photo=${encodeURIComponent(state.photo.id)}&max_side=${maxSide()}`;
}

// --- previews ---------------------------------------------------------------------------------

function changed() {
  state.version += 1;
  renderPoints();
  $("undo").disabled = state.history.length === 0;
  $("clear").disabled = state.points.length === 0;
  clearTimeout(state.timer);
  state.timer = setTimeout(preview, 40);
}

function remember() {
  state.history.push({ points: state.points.map((p) => ({ ...p })), reference: state.reference, selected: state.selected });
  if (state.history.length > 200) state.history.shift();
}

async function preview(retried = false) {
  if (!state.photo) return;
  if (state.preview) state.preview.abort();
  const controller = new AbortController();
  state.preview = controller;
  const version = state.version;
  const started = performance.now();
  setStatus("colouring…");
  try {
    const form = requestForm({ hints: hintsJSON(), max_side: maxSide() });
    const blob = await (await api("/api/preview", form, { signal: controller.signal })).blob();
    if (version !== state.version) return;
    const after = $("after");
    if (after.src.startsWith("blob:")) URL.revokeObjectURL(after.src);
    after.src = URL.createObjectURL(blob);
    after.dataset.version = String(version);
    setStatus(state.warning || `coloured in ${Math.round(performance.now() - started)} ms`, Boolean(state.warning));
  } catch (error) {
    if (error.name === "AbortError") return;
    if (error.status === 410 && !retried) {
      await reopen();
      loadBefore();
      return preview(true);
    }
    setStatus(error.message, true);
  } finally {
    if (state.preview === controller) state.preview = null;
  }
}

// --- download, sidecar, reference -------------------------------------------------------------

async function download() {
  setStatus("colouring at full size…");
  try {
    const response = await api("/api/colorize", requestForm({ hints: hintsJSON(), format: "original" }));
    const match = /filename\*=UTF-8''([^;]+)/.exec(response.headers.get("Content-Disposition") || "");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = match ? decodeURIComponent(match[1]) : state.photo.name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    setStatus(`downloaded ${link.download}`);
  } catch (error) { setStatus(error.message, true); }
}

async function saveHints() {
  try {
    const { saved } = await (await api("/api/hints", requestForm({ hints: hintsJSON() }))).json();
    setStatus(`saved ${saved}`);
    const item = document.querySelector(`#photos li[data-id="${state.photo.folderId}"] span`);
    if (item) item.classList.add("hinted");
  } catch (error) { setStatus(error.message, true); }
}

function addReferenceOption(id, label) {
  if (![...$("reference").options].some((option) => option.value === id)) {
    $("reference").append(new Option(label, id));
  }
}

async function uploadReference(file) {
  const form = new FormData();
  form.append("image", file, file.name);
  try {
    const opened = await (await api("/api/open", form)).json();
    addReferenceOption(opened.photo, `uploaded: ${opened.name}`);
    remember();
    state.reference = opened.photo;
    $("reference").value = opened.photo;
    changed();
  } catch (error) { setStatus(error.message, true); }
}

// --- the folder -------------------------------------------------------------------------------

async function loadFolder() {
  const { photos } = await (await api("/api/photos")).json();
  state.folderPhotos = photos;
  $("folder").hidden = false;
  const list = $("photos");
  list.replaceChildren();
  for (const photo of photos) {
    const item = document.createElement("li");
    item.dataset.id = photo.id;
    const image = document.createElement("img");
    image.loading = "lazy";
    image.alt = "";
    image.src = `/api/photos/${photo.id}/thumbnail`;
    const name = document.createElement("span");
    name.textContent = photo.name;
    if (photo.has_hints) name.className = "hinted";
    item.append(image, name);
    item.addEventListener("click", () => openFolderPhoto(photo.id));
    list.append(item);
    addReferenceOption(photo.id, photo.name);
  }
}

// --- start ------------------------------------------------------------------------------------

async function start() {
  state.info = await (await api("/api/info")).json();
  $("model").textContent = `${state.info.model}${state.info.takes_hints ? "" : " (takes no hints)"}`;
  setupStage();
  $("open-file").addEventListener("change", (event) => event.target.files[0] && openFile(event.target.files[0]));
  $("reference-file").addEventListener("change", (event) => event.target.files[0] && uploadReference(event.target.files[0]));
  $("reference").addEventListener("change", (event) => { remember(); state.reference = event.target.value; changed(); });
  $("picker").addEventListener("input", (event) => {
    const point = state.points[state.selected];
    if (!point) return;
    if (!state.editing) { remember(); state.editing = true; }
    point.color = event.target.value;
    changed();
  });
  $("picker").addEventListener("change", () => { state.editing = false; });
  $("delete").addEventListener("click", deleteSelected);
  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", () => { remember(); state.points = []; state.selected = -1; changed(); });
  $("download").addEventListener("click", download);
  $("save-hints").addEventListener("click", saveHints);
  $("split").addEventListener("input", (event) => {
    const share = Number(event.target.value);
    $("before-clip").style.clipPath = `inset(0 ${100 - share}% 0 0)`;
    $("divider").style.left = `${share}%`;
    $("divider").style.display = share > 0 && share < 100 ? "block" : "none";
  });
  document.addEventListener("keydown", (event) => {
    if (event.target.matches("input, select, textarea")) return;
    if ((event.key === "Delete" || event.key === "Backspace") && state.selected >= 0) { event.preventDefault(); deleteSelected(); }
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") { event.preventDefault(); undo(); }
  });
  const workspace = $("workspace");
  workspace.addEventListener("dragover", (event) => { event.preventDefault(); workspace.classList.add("dragging"); });
  workspace.addEventListener("dragleave", () => workspace.classList.remove("dragging"));
  workspace.addEventListener("drop", (event) => {
    event.preventDefault();
    workspace.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) openFile(file);
  });
  let resized = 0;
  window.addEventListener("resize", () => {
    layout();
    clearTimeout(resized);
    resized = setTimeout(() => { if (state.photo) { loadBefore(); preview(); } }, 200);
  });
  if (state.info.folder) await loadFolder();
  setStatus("ready");
}

start().catch((error) => setStatus(error.message, true));

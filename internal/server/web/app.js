// facever's web page: plain JavaScript over the server's JSON API. The API
// key is kept in sessionStorage (this tab only) and sent as a Bearer token.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "facever.key";
const screens = ["verify", "identify", "gallery", "keys"];

// api calls the server and returns the decoded JSON, or throws an Error
// carrying the server's message and code.
async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY) } };
  if (body instanceof FormData) {
    opts.body = body;
  } else if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok && !(r.status === 422 && data && (data.photos || data.faces))) {
    const err = new Error((data && data.error && data.error.message) || ("HTTP " + r.status));
    err.status = r.status;
    err.code = data && data.error && data.error.code;
    throw err;
  }
  return data;
}

function show(el, on) { el.hidden = !on; }
function text(el, s) { el.textContent = s; }
function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }
function make(tag, props, kids) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const k of kids || []) e.append(k);
  return e;
}
function fmt(x) { return Number(x).toFixed(3); }
function missing(err, what) {
  if (err.status === 404 && err.code === "not_found" && /no endpoint/.test(err.message)) {
    return "This server has no endpoint to " + what + ".";
  }
  return err.message;
}

// busy disables a form's buttons while its request runs.
async function busy(form, fn) {
  const bs = form.querySelectorAll("button");
  bs.forEach((b) => (b.disabled = true));
  try { await fn(); } finally { bs.forEach((b) => (b.disabled = false)); }
}

// ---- screens and sign-in ----

function go(name) {
  closePerson();
  for (const s of screens) show($(s), s === name);
  for (const b of document.querySelectorAll("#nav [data-screen]")) {
    if (b.dataset.screen === name) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  if (name === "gallery") loadPeople("");
  if (name === "keys") loadKeys();
}

function signedIn(on) {
  show($("signin"), !on);
  show($("nav"), on);
  if (on) go("verify");
  else for (const s of screens) show($(s), false);
}

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  text($("signin-error"), "");
  sessionStorage.setItem(KEY, $("key").value.trim());
  try {
    await api("GET", "/v1/identities?limit=1");
    $("key").value = "";
    signedIn(true);
  } catch (e) {
    sessionStorage.removeItem(KEY);
    text($("signin-error"), e.status === 401 ? "That key is not accepted: " + e.message : e.message);
  }
});
$("signout").addEventListener("click", () => { sessionStorage.removeItem(KEY); closePerson(); signedIn(false); $("key").focus(); });
for (const b of document.querySelectorAll("#nav [data-screen]")) b.addEventListener("click", () => go(b.dataset.screen));

// ---- drop zones: a dropped file goes into the zone's file input ----

for (const z of document.querySelectorAll(".drop")) {
  const input = $(z.dataset.input);
  z.addEventListener("dragover", (ev) => { ev.preventDefault(); z.classList.add("over"); });
  z.addEventListener("dragleave", () => z.classList.remove("over"));
  z.addEventListener("drop", (ev) => {
    ev.preventDefault();
    z.classList.remove("over");
    if (ev.dataTransfer.files.length) {
      input.files = ev.dataTransfer.files;
      input.dispatchEvent(new Event("change"));
    }
  });
  const img = z.querySelector("img");
  if (img) input.addEventListener("change", () => preview(input, img));
}

function preview(input, img) {
  if (img.src) URL.revokeObjectURL(img.src);
  if (input.files.length) { img.src = URL.createObjectURL(input.files[0]); show(img, true); }
  else show(img, false);
}

// ---- verify ----

$("verify-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  busy(ev.target, async () => {
    text($("verify-error"), "");
    show($("verify-result"), false);
    const fd = new FormData();
    fd.append("image_a", $("photo-a").files[0]);
    fd.append("image_b", $("photo-b").files[0]);
    try {
      const d = await api("POST", "/v1/verify?crops=1", fd);
      const same = d.same_person;
      const dec = $("verify-decision");
      text(dec, same ? "Same person" : "Different people");
      dec.className = "decision " + (same ? "same" : "different");
      $("crop-a").src = d.photos[0].crop || "";
      $("crop-b").src = d.photos[1].crop || "";
      // The bar runs from similarity -0.2 to 1 (cosine); the mark is the threshold.
      const pos = (x) => Math.max(0, Math.min(100, ((x + 0.2) / 1.2) * 100));
      $("verify-fill").style.width = pos(d.similarity) + "%";
      $("verify-fill").className = "fill" + (same ? " same" : "");
      $("verify-mark").style.left = pos(d.threshold) + "%";
      $("verify-bar").setAttribute("aria-label", "similarity " + fmt(d.similarity) + " against threshold " + fmt(d.threshold));
      text($("verify-numbers"), "similarity " + fmt(d.similarity) + " · threshold " + fmt(d.threshold) + " · model " + d.model +
        (d.photos.some((p) => (p.face_count ?? p.faces) > 1) ? " · the largest face of each photo was used" : ""));
      show($("verify-result"), true);
    } catch (e) {
      text($("verify-error"), e.message);
    }
  });
});

// ---- identify ----

$("identify-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  busy(ev.target, async () => {
    text($("identify-error"), "");
    show($("identify-result"), false);
    const file = $("photo-id").files[0];
    const fd = new FormData();
    fd.append("image", file);
    fd.append("top", $("identify-top").value || "3");
    fd.append("all_faces", "true");
    try {
      const d = await api("POST", "/v1/identify", fd);
      await drawIdentify(file, d);
    } catch (e) {
      text($("identify-error"), e.message);
    }
  });
});

// identifyFaces reads either answer shape: one face (face, top, match) or
// every face (results: [{face, top, match}]).
function identifyFaces(d) {
  const list = Array.isArray(d.results) ? d.results : (Array.isArray(d.faces) ? d.faces : [d]);
  return list.map((r) => ({ face: r.face || r, top: r.top || r.matches || [], match: r.match || null, thr: r.threshold || d.threshold }));
}

async function drawIdentify(file, d) {
  const img = $("identify-photo");
  const stage = $("identify-stage");
  for (const b of stage.querySelectorAll(".box")) b.remove();
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(file);
  await img.decode().catch(() => {});
  const faces = identifyFaces(d);
  const ol = $("identify-faces");
  clear(ol);
  const place = () => {
    const sx = img.clientWidth / img.naturalWidth, sy = img.clientHeight / img.naturalHeight;
    for (const b of stage.querySelectorAll(".box")) {
      const [x1, y1, x2, y2] = JSON.parse(b.dataset.box);
      b.style.left = x1 * sx + "px"; b.style.top = y1 * sy + "px";
      b.style.width = (x2 - x1) * sx + "px"; b.style.height = (y2 - y1) * sy + "px";
    }
  };
  faces.forEach((f, i) => {
    const who = f.match ? f.match.name : "unknown";
    const box = make("div", { className: "box" }, [make("span", { textContent: (i + 1) + ": " + who })]);
    box.dataset.box = JSON.stringify(f.face.box);
    stage.append(box);
    const items = f.top.map((m) => make("li", { textContent: m.name + " — " + fmt(m.similarity ?? m.score) + ((m.similarity ?? m.score) >= f.thr ? " (match)" : "") }));
    ol.append(make("li", { className: "face" }, [
      make("strong", { className: "who", textContent: "Face " + (i + 1) + ": " + who }),
      make("ol", {}, items.length ? items : [make("li", { textContent: "the gallery is empty" })]),
    ]));
  });
  show($("identify-result"), true);
  place();
  window.onresize = place;
}

// ---- gallery ----

// The lists page with the API's opaque cursors: a page's next_cursor is
// passed back as cursor= for the next one (absent on the last page).
const PAGE = 100;
let pageCursor = "", nextCursor = null, current = null;

// pagesOf walks every page of a list (a person's photos, the keys).
async function pagesOf(path, member) {
  let all = [], cursor = "";
  for (let n = 0; n < 1000; n++) {
    const d = await api("GET", path + (path.includes("?") ? "&" : "?") + "limit=" + PAGE + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    all = all.concat(d[member] || []);
    if (!d.next_cursor) break;
    cursor = d.next_cursor;
  }
  return all;
}

// loadPeople shows one page of people (cursor "": the first), or with a
// search one page of the people whose names start with it (the API's
// prefix search: case matters).
async function loadPeople(cursor) {
  text($("gallery-error"), "");
  const q = $("search").value.trim();
  const body = $("people").tBodies[0];
  try {
    const d = await api("GET", "/v1/identities?limit=" + PAGE + (q ? "&prefix=" + encodeURIComponent(q) : "") + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    const rows = d.identities || [];
    pageCursor = cursor;
    nextCursor = d.next_cursor || null;
    clear(body);
    for (const it of rows) {
      const b = make("button", { type: "button", className: "linklike", textContent: it.name });
      b.addEventListener("click", () => openPerson(it.id));
      body.append(make("tr", {}, [make("td", {}, [b]), make("td", { textContent: it.templates }), make("td", { textContent: new Date(it.created).toLocaleString() })]));
    }
    text($("people-caption"), rows.length
      ? rows.length + " shown" + (q ? " (names starting with \u201c" + q + "\u201d)" : "") + (nextCursor ? "; more on the next page" : "")
      : "nobody" + (q ? " matches" : " enrolled yet"));
    $("page-next").disabled = !nextCursor;
    $("page-first").disabled = !pageCursor;
  } catch (e) {
    text($("gallery-error"), e.message);
  }
}
$("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadPeople(""); });
$("page-first").addEventListener("click", () => loadPeople(""));
$("page-next").addEventListener("click", () => { if (nextCursor) loadPeople(nextCursor); });

$("new-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  busy(ev.target, async () => {
    text($("gallery-error"), ""); text($("gallery-status"), "");
    try {
      const it = await api("POST", "/v1/identities", { name: $("new-name").value.trim() });
      const r = await addPhotos(it.id, $("new-photos").files);
      text($("gallery-status"), "Enrolled " + it.name + ": " + r);
      $("new-form").reset();
      await loadPeople("");
      await openPerson(it.id);
    } catch (e) {
      text($("gallery-error"), e.message);
    }
  });
});

async function addPhotos(id, files) {
  const fd = new FormData();
  for (const f of files) fd.append("images", f);
  fd.append("largest", "true");
  const d = await api("POST", "/v1/identities/" + id + "/faces", fd);
  const bad = (d.photos || d.faces || []).filter((f) => !f.enrolled).map((f) => files[f.index].name + ": " + f.reason);
  return d.enrolled + " of " + files.length + " photos enrolled" + (bad.length ? "; " + bad.join("; ") : "");
}

// ---- a person's enrolled faces, each shown as its aligned crop ----

// The crops are fetched with the key (an <img src> could not send it) and
// shown through object URLs, all revoked when the person's screen is
// redrawn or left. shownGen tells a crop that arrives late which drawing
// it was for: one for an older drawing is dropped at once.
let cropURLs = [], shownGen = 0;
const CROP_FETCHES = 4; // crops fetched at once

function dropCrops() {
  shownGen++;
  for (const u of cropURLs) URL.revokeObjectURL(u);
  cropURLs = [];
}

// closePerson hides the person's screen and frees its images.
function closePerson() {
  dropCrops();
  clear($("person-faces"));
  show($("person"), false);
  current = null;
}

// cropPlaceholder stands where a face has no crop to show.
function cropPlaceholder(t, why) {
  const p = make("div", { className: "no-crop", textContent: why });
  p.setAttribute("role", "img");
  p.setAttribute("aria-label", "no image of face " + t.id + ": " + why);
  return p;
}

// loadCrops fetches the crops of faces (a few at a time) into their <img>.
async function loadCrops(id, faces, gen) {
  let next = 0;
  const worker = async () => {
    while (next < faces.length && gen === shownGen) {
      const { t, img } = faces[next++];
      let url = null, why = "image not available";
      try {
        const r = await fetch("/v1/identities/" + id + "/faces/" + t.id + "/crop", { headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY) } });
        if (r.ok) url = URL.createObjectURL(await r.blob());
        else if (r.status === 404) why = "no image kept";
      } catch (e) { /* shown as not available */ }
      if (gen !== shownGen) { if (url) URL.revokeObjectURL(url); return; }
      if (url) { cropURLs.push(url); img.src = url; }
      else img.replaceWith(cropPlaceholder(t, why));
    }
  };
  await Promise.all(Array.from({ length: Math.min(CROP_FETCHES, faces.length) }, worker));
}

async function openPerson(id) {
  text($("gallery-error"), "");
  const d = await api("GET", "/v1/identities/" + id + "?limit=" + PAGE);
  let templates = d.templates || [];
  for (let cursor = d.next_cursor; cursor;) {
    const more = await api("GET", "/v1/identities/" + id + "?limit=" + PAGE + "&cursor=" + encodeURIComponent(cursor));
    templates = templates.concat(more.templates || []);
    cursor = more.next_cursor;
  }
  dropCrops();
  const gen = shownGen;
  current = d.identity;
  text($("person-name"), current.name);
  text($("person-info"), current.templates + " photos · id " + current.id + " · enrolled " + new Date(current.created).toLocaleString());
  $("rename").value = current.name;
  const ul = $("person-faces");
  clear(ul);
  const pending = [];
  for (const t of templates) {
    const label = (t.source || "photo") + " (face " + t.id + ")";
    const del = make("button", { type: "button", className: "danger", textContent: "Delete" });
    del.setAttribute("aria-label", "Delete photo " + label);
    del.addEventListener("click", async () => {
      try {
        const r = await api("DELETE", "/v1/identities/" + id + "/faces/" + t.id);
        text($("gallery-status"), "Deleted photo " + (t.source || "") + " (face " + t.id + ") of " + r.identity.name + ": " + r.identity.templates + " left");
        await openPerson(id);
        await loadPeople(pageCursor);
      } catch (e) { text($("gallery-error"), missing(e, "delete one photo")); }
    });
    let pic;
    if (t.has_crop === false) {
      pic = cropPlaceholder(t, "no image kept");
    } else {
      // has_crop true, or a server that does not say: ask for the crop.
      pic = make("img", { alt: "enrolled face " + t.id + " of " + current.name + ", from " + (t.source || "a photo"), width: 112, height: 112, className: "crop" });
      pending.push({ t, img: pic });
    }
    ul.append(make("li", { className: "face-card" }, [
      make("figure", {}, [pic, make("figcaption", {}, [make("span", { className: "source", textContent: t.source || "photo" }), make("span", { className: "muted", textContent: "face " + t.id })])]),
      del,
    ]));
  }
  show($("person-confirm"), false);
  show($("person"), true);
  $("person-name").focus();
  loadCrops(id, pending, gen);
}

$("rename-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  busy(ev.target, async () => {
    text($("gallery-error"), "");
    try {
      await api("PATCH", "/v1/identities/" + current.id, { name: $("rename").value.trim() });
      text($("gallery-status"), "Renamed to " + $("rename").value.trim());
      await openPerson(current.id);
      await loadPeople(pageCursor);
    } catch (e) { text($("gallery-error"), missing(e, "rename a person")); }
  });
});

$("add-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  busy(ev.target, async () => {
    try {
      text($("gallery-status"), await addPhotos(current.id, $("add-photos").files));
      $("add-form").reset();
      await openPerson(current.id);
    } catch (e) { text($("gallery-error"), e.message); }
  });
});

// Deleting asks first, in the page (no modal dialog).
$("person-delete").addEventListener("click", () => {
  if (!current) return;
  text($("person-confirm-text"), "Delete " + current.name + " and all their photos?");
  show($("person-confirm"), true);
  $("person-delete-yes").focus();
});
$("person-delete-no").addEventListener("click", () => { show($("person-confirm"), false); $("person-delete").focus(); });
$("person-delete-yes").addEventListener("click", async () => {
  show($("person-confirm"), false);
  try {
    await api("DELETE", "/v1/identities/" + current.id);
    text($("gallery-status"), "Deleted " + current.name);
    closePerson();
    await loadPeople(pageCursor);
  } catch (e) { text($("gallery-error"), e.message); }
});

// ---- API keys (admin keys only) ----

let revoking = null; // the key whose revocation is being confirmed

async function loadKeys() {
  text($("keys-error"), "");
  const body = $("keys-table").tBodies[0];
  try {
    const keys = await pagesOf("/v1/keys", "keys");
    clear(body);
    for (const k of keys) {
      const rev = make("button", { type: "button", className: "danger", textContent: "Revoke" });
      rev.setAttribute("aria-label", "Revoke key " + k.name + " (" + k.prefix + ")");
      rev.addEventListener("click", () => {
        revoking = k;
        text($("key-confirm-text"), "Revoke key " + k.name + " (" + k.prefix + "\u2026)? Clients using it stop working at once.");
        show($("key-confirm"), true);
        $("key-revoke-yes").focus();
      });
      body.append(make("tr", {}, [make("td", { textContent: k.name }), make("td", { textContent: k.prefix || "" }),
        make("td", { textContent: (k.scopes || []).join(", ") }), make("td", { textContent: k.created ? new Date(k.created).toLocaleString() : "" }), make("td", {}, [rev])]));
    }
  } catch (e) {
    clear(body);
    text($("keys-error"), e.status === 403 ? "Only an admin key can manage keys." : missing(e, "manage keys"));
  }
}

// Revoking asks first, in the page.
$("key-revoke-no").addEventListener("click", () => { revoking = null; show($("key-confirm"), false); });
$("key-revoke-yes").addEventListener("click", async () => {
  const k = revoking;
  revoking = null;
  show($("key-confirm"), false);
  if (!k) return;
  try {
    await api("DELETE", "/v1/keys/" + encodeURIComponent(k.id));
    text($("key-new"), "Revoked key " + k.name + " (" + k.prefix + "\u2026)");
    await loadKeys();
  } catch (e) { text($("keys-error"), e.message); }
});

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  busy(ev.target, async () => {
    text($("keys-error"), ""); text($("key-new"), "");
    const scopes = [...document.querySelectorAll("#key-form input[name=scope]:checked")].map((c) => c.value);
    try {
      const d = await api("POST", "/v1/keys", { name: $("key-name").value.trim(), scopes });
      text($("key-new"), "New key (shown once, copy it now): " + d.key);
      $("key-form").reset();
      await loadKeys();
    } catch (e) { text($("keys-error"), e.status === 403 ? "Only an admin key can create keys." : missing(e, "manage keys")); }
  });
});

// ---- start ----

fetch("/healthz").then((r) => r.json()).then((h) => text($("model"), "model " + h.model)).catch(() => {});
signedIn(!!sessionStorage.getItem(KEY));

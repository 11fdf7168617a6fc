// Content script (injected on demand): draws the verdict next to the image and, for data: and
// blob: images, reads the bytes from inside the page where those URLs live.
(() => {
  if (window.__ldmscanContent) return;
  window.__ldmscanContent = true;

  const STYLE = `
    .ldmscan-badge { position: absolute; z-index: 2147483647; font: 13px/1.35 system-ui, sans-serif;
      background: #fff; color: #222; border-radius: 6px; box-shadow: 0 2px 8px rgba(0,0,0,.35);
      padding: 6px 9px; max-width: 340px; cursor: pointer; border-left: 5px solid #888; }
    .ldmscan-badge[data-kind="verdict"][data-label="generated"] { border-left-color: #b00020; }
    .ldmscan-badge[data-kind="verdict"][data-label="uncertain"] { border-left-color: #a65f00; }
    .ldmscan-badge[data-kind="verdict"][data-label="real"] { border-left-color: #1b6e20; }
    .ldmscan-badge .ldmscan-title { font-weight: 600; }
    .ldmscan-badge .ldmscan-details { display: none; margin-top: 6px; font-size: 12px; }
    .ldmscan-badge.open .ldmscan-details { display: block; }
    .ldmscan-badge ul { margin: 4px 0; padding-left: 16px; }`;

  function ensureStyle() {
    if (document.getElementById("ldmscan-style")) return;
    const style = document.createElement("style");
    style.id = "ldmscan-style";
    style.textContent = STYLE;
    document.documentElement.appendChild(style);
  }

  function findImages(srcUrl) {
    return [...document.images].filter((img) => img.currentSrc === srcUrl || img.src === srcUrl);
  }

  function list(title, items) {
    if (!items.length) return null;
    const wrap = document.createElement("div");
    const head = document.createElement("div");
    head.textContent = title;
    const ul = document.createElement("ul");
    for (const item of items) {
      const li = document.createElement("li");
      li.textContent = item; // textContent: nothing from the server is parsed as HTML
      ul.appendChild(li);
    }
    wrap.append(head, ul);
    return wrap;
  }

  function render(badge, state) {
    badge.replaceChildren();
    badge.dataset.kind = state.kind;
    const title = document.createElement("div");
    title.className = "ldmscan-title";
    if (state.kind === "checking") {
      title.textContent = "ldmscan: checking…";
      badge.append(title);
      return;
    }
    if (state.kind !== "verdict") {
      title.textContent = `ldmscan: ${state.message}`;
      badge.append(title);
      return;
    }
    const view = state.view;
    badge.dataset.label = view.label;
    title.textContent = `${view.title} · ${view.percent}`;
    const meta = document.createElement("div");
    meta.className = "ldmscan-meta";
    meta.textContent = `${view.label} · detector ${view.detector} · click for details`;
    const parts = [title];
    if (view.latentSpace) {
      const latent = document.createElement("div");
      latent.className = "ldmscan-latent";
      latent.textContent = `Latent space: ${view.latentSpace.name} (${view.latentSpace.percent})`;
      parts.push(latent);
    }
    const details = document.createElement("div");
    details.className = "ldmscan-details";
    const latentList = view.latentSpace ? list("Latent-space probabilities", view.latentSpace.classes) : null;
    for (const part of [list("Why", view.reasons), latentList, list("Crop scores", view.crops), list("Metadata evidence", view.evidence)]) {
      if (part) details.appendChild(part);
    }
    badge.append(...parts, meta, details);
  }

  function show(srcUrl, state) {
    ensureStyle();
    const images = findImages(srcUrl);
    for (const img of images.length ? images : [null]) {
      const key = srcUrl.length > 200 ? srcUrl.slice(0, 200) : srcUrl;
      let badge = [...document.querySelectorAll(".ldmscan-badge")].find((b) => b.dataset.src === key && b.__img === img);
      if (!badge) {
        badge = document.createElement("div");
        badge.className = "ldmscan-badge";
        badge.dataset.src = key;
        badge.__img = img;
        badge.addEventListener("click", () => badge.classList.toggle("open"));
        document.body.appendChild(badge);
      }
      const rect = img ? img.getBoundingClientRect() : { left: 10, top: 10 };
      badge.style.left = `${Math.max(0, rect.left + window.scrollX + 6)}px`;
      badge.style.top = `${Math.max(0, rect.top + window.scrollY + 6)}px`;
      render(badge, state);
    }
  }

  async function readInPage(url) {
    const response = await fetch(url);
    const blob = await response.blob();
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return { base64: btoa(binary), size: bytes.length, type: blob.type };
  }

  chrome.runtime.onMessage.addListener((message, _sender, reply) => {
    if (message?.type === "ldmscan-state") {
      show(message.srcUrl, message.state);
      reply({ ok: true });
      return false;
    }
    if (message?.type === "ldmscan-fetch") {
      readInPage(message.url).then(reply, (err) => reply({ error: String(err?.message || err) }));
      return true; // the reply comes asynchronously
    }
    return false;
  });
})();

// Pure logic shared by the service worker, the options page and the popup. No browser APIs
// here, so `node --test` covers it.

export const DEFAULT_SERVER = "http://127.0.0.1:8422";
export const MAX_RECENT = 50;
export const MAX_IMAGE_BYTES = 50 * 1024 * 1024;

export function normalizeServerUrl(raw) {
  const text = String(raw ?? "").trim() || DEFAULT_SERVER;
  let url;
  try {
    url = new URL(text.includes("://") ? text : `http://${text}`);
  } catch {
    throw new Error(`not a server address: ${text}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`server must be http or https, not ${url.protocol}`);
  }
  return url.origin + url.pathname.replace(/\/+$/, "");
}

export function checkRequest(serverUrl, token, bytes, { pageUrl, imageUrl, contentType } = {}) {
  const headers = { "Content-Type": contentType || "application/octet-stream" };
  if (token) headers.Authorization = `Bearer ${token}`;
  // Context only: the server stores these and never fetches them.
  if (pageUrl) headers["X-Page-URL"] = String(pageUrl).slice(0, 2048);
  if (imageUrl && !String(imageUrl).startsWith("data:")) {
    headers["X-Image-URL"] = String(imageUrl).slice(0, 2048);
  }
  return { url: `${normalizeServerUrl(serverUrl)}/v1/check`, method: "POST", headers, body: bytes };
}

// Turn whatever happened into one of the states the overlay shows.
export function classify({ status, body, networkError, tooLarge }) {
  if (tooLarge) return { kind: "too_large", message: "Image too large to check." };
  if (networkError) {
    return { kind: "unreachable", message: `ldmscan server unreachable (${networkError}).` };
  }
  const code = body?.error?.code;
  if (status === 200 && body?.label) return { kind: "verdict", verdict: body };
  if (status === 401) return { kind: "unauthorized", message: "Unauthorised: check the token in the extension options." };
  if (status === 413 || code === "too_large" || code === "too_many_pixels") {
    return { kind: "too_large", message: body?.error?.message || "Image too large to check." };
  }
  if (status === 422) {
    return { kind: "not_image", message: body?.error?.message || "Not an image ldmscan can read." };
  }
  if (status === 429) return { kind: "busy", message: "Server busy; try again in a moment." };
  return { kind: "error", message: body?.error?.message || `Server answered HTTP ${status}.` };
}

export function describeVerdict(verdict) {
  const score = typeof verdict.score === "number" ? verdict.score : null;
  const detector = verdict.detector ? `${verdict.detector.name} ${verdict.detector.version}` : "";
  const titles = { generated: "Likely AI-generated", uncertain: "Uncertain", real: "No LDM fingerprint found", error: "Not scored" };
  return {
    label: verdict.label,
    title: titles[verdict.label] || verdict.label,
    percent: score === null ? "—" : `${(score * 100).toFixed(1)}%`,
    detector,
    reasons: verdict.reasons || [],
    crops: (verdict.crop_scores || []).map((s) => `${(s * 100).toFixed(1)}%`),
    evidence: (verdict.evidence || []).map((e) => `${e.kind} (${e.strength}): ${e.detail}`),
    latentSpace: describeAttribution(verdict.attribution),
  };
}

// The detector's guess at which autoencoder family made the image: null when it made none
// (pixels say real, no attribution head, or below the detector's calibrated confidence).
export function describeAttribution(attribution) {
  if (!attribution || typeof attribution.probability !== "number") return null;
  const name = attribution.name || attribution.guess;
  const others = Object.entries(attribution.probabilities || {})
    .sort((a, b) => b[1] - a[1])
    .map(([key, p]) => `${key} ${(p * 100).toFixed(0)}%`);
  return { name, percent: `${(attribution.probability * 100).toFixed(0)}%`, classes: others };
}

export function addRecent(list, entry, max = MAX_RECENT) {
  const next = [entry, ...(list || []).filter((e) => !(e.sha256 && e.sha256 === entry.sha256 && e.pageUrl === entry.pageUrl))];
  return next.slice(0, max);
}

export function base64ToBytes(b64) {
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export function bytesToBase64(bytes) {
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

// Image URLs the service worker may fetch itself; data: and blob: belong to the page.
export function fetchPlace(url) {
  const scheme = String(url).split(":", 1)[0].toLowerCase();
  if (scheme === "http" || scheme === "https") return "worker";
  if (scheme === "data" || scheme === "blob") return "page";
  return "unsupported";
}

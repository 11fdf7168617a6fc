// Service worker: the "Check image" context-menu item, fetching the bytes, asking the server,
// and telling the page's content script what to show.
import { addRecent, base64ToBytes, checkRequest, classify, describeVerdict, fetchPlace, MAX_IMAGE_BYTES } from "./lib/logic.js";

const MENU_ID = "ldmscan-check-image";

chrome.runtime.onInstalled.addListener(() => {
  chrome.contextMenus.create({ id: MENU_ID, title: "Check image with ldmscan", contexts: ["image"] });
});

chrome.contextMenus.onClicked.addListener((info, tab) => {
  if (info.menuItemId === MENU_ID) handleCheck(info, tab);
});

async function settings() {
  const { serverUrl, token } = await chrome.storage.local.get(["serverUrl", "token"]);
  return { serverUrl, token };
}

async function ensureContentScript(tabId) {
  await chrome.scripting.executeScript({ target: { tabId }, files: ["content.js"] });
}

async function tell(tabId, srcUrl, state) {
  try {
    await chrome.tabs.sendMessage(tabId, { type: "ldmscan-state", srcUrl, state });
  } catch (err) {
    console.warn("ldmscan: could not reach the page", err);
  }
}

async function imageBytes(srcUrl, tabId) {
  const place = fetchPlace(srcUrl);
  if (place === "worker") {
    // The page's cookies go along where the browser allows (host permission + credentials).
    const response = await fetch(srcUrl, { credentials: "include" });
    if (!response.ok) throw new Error(`image download failed: HTTP ${response.status}`);
    const length = Number(response.headers.get("Content-Length") || 0);
    if (length > MAX_IMAGE_BYTES) return { tooLarge: true };
    const buffer = new Uint8Array(await response.arrayBuffer());
    if (buffer.length > MAX_IMAGE_BYTES) return { tooLarge: true };
    return { bytes: buffer, contentType: response.headers.get("Content-Type") };
  }
  if (place === "page") {
    const reply = await chrome.tabs.sendMessage(tabId, { type: "ldmscan-fetch", url: srcUrl });
    if (!reply || reply.error) throw new Error(reply?.error || "the page could not read the image");
    if (reply.size > MAX_IMAGE_BYTES) return { tooLarge: true };
    return { bytes: base64ToBytes(reply.base64), contentType: reply.type };
  }
  throw new Error(`cannot read images from ${srcUrl.split(":", 1)[0]}: URLs`);
}

// Exported on the worker's global scope so tests can call exactly what the menu calls.
export async function handleCheck(info, tab) {
  const srcUrl = info.srcUrl;
  const pageUrl = info.pageUrl || tab?.url;
  await ensureContentScript(tab.id);
  await tell(tab.id, srcUrl, { kind: "checking" });
  let state;
  try {
    const image = await imageBytes(srcUrl, tab.id);
    if (image.tooLarge) {
      state = classify({ tooLarge: true });
    } else {
      const { serverUrl, token } = await settings();
      const request = checkRequest(serverUrl, token, image.bytes, { pageUrl, imageUrl: srcUrl, contentType: image.contentType });
      let response;
      try {
        response = await fetch(request.url, { method: "POST", headers: request.headers, body: request.body });
      } catch (err) {
        state = classify({ networkError: err.message });
      }
      if (response) {
        const body = await response.json().catch(() => null);
        state = classify({ status: response.status, body });
      }
    }
  } catch (err) {
    state = { kind: "error", message: err.message };
  }
  if (state.kind === "verdict") state.view = describeVerdict(state.verdict);
  await tell(tab.id, srcUrl, state);
  if (state.kind === "verdict") {
    const v = state.verdict;
    const { recent } = await chrome.storage.local.get("recent");
    await chrome.storage.local.set({
      recent: addRecent(recent, { sha256: v.sha256, label: v.label, score: v.score, imageUrl: srcUrl.startsWith("data:") ? "(inline image)" : srcUrl, pageUrl, at: new Date().toISOString() }),
    });
  }
  return state;
}

globalThis.handleCheck = handleCheck;

import { DEFAULT_SERVER, normalizeServerUrl } from "./lib/logic.js";

const server = document.getElementById("server");
const token = document.getElementById("token");
const status = document.getElementById("status");

const saved = await chrome.storage.local.get(["serverUrl", "token"]);
server.value = saved.serverUrl || DEFAULT_SERVER;
token.value = saved.token || "";

async function save() {
  const serverUrl = normalizeServerUrl(server.value);
  await chrome.storage.local.set({ serverUrl, token: token.value.trim() });
  return serverUrl;
}

document.getElementById("save").addEventListener("click", async () => {
  try {
    status.textContent = `Saved: ${await save()}`;
  } catch (err) {
    status.textContent = err.message;
  }
});

document.getElementById("test").addEventListener("click", async () => {
  try {
    const base = await save();
    const health = await (await fetch(`${base}/v1/health`)).json();
    // An authenticated request for an unknown image: 404 means the token works, 401 it does not.
    const probe = await fetch(`${base}/v1/verdicts/${"0".repeat(64)}`, {
      headers: { Authorization: `Bearer ${token.value.trim()}` },
    });
    const auth = probe.status === 401 ? "token rejected" : "token accepted";
    status.textContent = `Connected: ldmscan ${health.version}, detector ${health.detector.name} ${health.detector.version} on ${health.device}; ${auth}.`;
  } catch (err) {
    status.textContent = `Cannot reach the server: ${err.message}`;
  }
});

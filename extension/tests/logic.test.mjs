import assert from "node:assert/strict";
import { test } from "node:test";
import { addRecent, base64ToBytes, bytesToBase64, checkRequest, classify, describeVerdict, fetchPlace, normalizeServerUrl } from "../lib/logic.js";

test("server URLs are normalised", () => {
  assert.equal(normalizeServerUrl(""), "http://127.0.0.1:8422");
  assert.equal(normalizeServerUrl("localhost:9000/"), "http://localhost:9000");
  assert.equal(normalizeServerUrl("https://mod.example.org/ldmscan/"), "https://mod.example.org/ldmscan");
  assert.throws(() => normalizeServerUrl("ftp://x"), /http or https/);
});

test("check request carries token and context, never data: URLs", () => {
  const bytes = new Uint8Array([1, 2, 3]);
  const r = checkRequest("http://h:1", "tok", bytes, { pageUrl: "https://p/", imageUrl: "https://i/x.png", contentType: "image/png" });
  assert.equal(r.url, "http://h:1/v1/check");
  assert.equal(r.headers.Authorization, "Bearer tok");
  assert.equal(r.headers["X-Page-URL"], "https://p/");
  assert.equal(r.headers["X-Image-URL"], "https://i/x.png");
  assert.equal(r.body, bytes);
  const inline = checkRequest("http://h:1", "", bytes, { imageUrl: "data:image/png;base64,AAAA" });
  assert.equal(inline.headers["X-Image-URL"], undefined);
  assert.equal(inline.headers.Authorization, undefined);
});

test("responses become overlay states", () => {
  assert.equal(classify({ status: 200, body: { label: "real" } }).kind, "verdict");
  assert.equal(classify({ status: 401, body: {} }).kind, "unauthorized");
  assert.equal(classify({ status: 413, body: {} }).kind, "too_large");
  assert.equal(classify({ status: 422, body: { error: { code: "too_many_pixels", message: "m" } } }).kind, "too_large");
  assert.equal(classify({ status: 422, body: { error: { code: "not_an_image", message: "no" } } }).message, "no");
  assert.equal(classify({ status: 429, body: {} }).kind, "busy");
  assert.equal(classify({ networkError: "Failed to fetch" }).kind, "unreachable");
  assert.equal(classify({ tooLarge: true }).kind, "too_large");
  assert.equal(classify({ status: 500, body: null }).kind, "error");
});

test("verdicts are described for people", () => {
  const view = describeVerdict({ label: "generated", score: 0.9876, detector: { name: "d", version: "1" }, reasons: ["r"], crop_scores: [0.5], evidence: [{ kind: "c2pa", strength: "strong", detail: "x" }] });
  assert.equal(view.percent, "98.8%");
  assert.equal(view.title, "Likely AI-generated");
  assert.equal(view.detector, "d 1");
  assert.deepEqual(view.crops, ["50.0%"]);
  assert.equal(view.evidence[0], "c2pa (strong): x");
  assert.equal(describeVerdict({ label: "generated", score: null }).percent, "—");
  assert.equal(view.latentSpace, null);
});

test("the latent-space guess is described, or absent", () => {
  const view = describeVerdict({
    label: "generated",
    score: 0.99,
    attribution: { guess: "sdxl", name: "SDXL", probability: 0.8312, probabilities: { sdxl: 0.8312, "sd1-2": 0.1, flux1: 0.0688 } },
  });
  assert.equal(view.latentSpace.name, "SDXL");
  assert.equal(view.latentSpace.percent, "83%");
  assert.deepEqual(view.latentSpace.classes, ["sdxl 83%", "sd1-2 10%", "flux1 7%"]);
  assert.equal(describeVerdict({ label: "real", score: 0.1, attribution: null }).latentSpace, null);
});

test("recent list is bounded and deduplicated", () => {
  let list = [];
  for (let i = 0; i < 60; i++) list = addRecent(list, { sha256: `h${i}`, pageUrl: "p" });
  assert.equal(list.length, 50);
  assert.equal(list[0].sha256, "h59");
  list = addRecent(list, { sha256: "h58", pageUrl: "p" });
  assert.equal(list.filter((e) => e.sha256 === "h58").length, 1);
});

test("bytes survive base64 both ways", () => {
  const bytes = new Uint8Array(100000).map((_, i) => i % 256);
  assert.deepEqual(base64ToBytes(bytesToBase64(bytes)), bytes);
});

test("where image bytes are fetched", () => {
  assert.equal(fetchPlace("https://x/y.png"), "worker");
  assert.equal(fetchPlace("data:image/png;base64,AA"), "page");
  assert.equal(fetchPlace("blob:https://x/uuid"), "page");
  assert.equal(fetchPlace("file:///etc/passwd"), "unsupported");
});

const { recent = [] } = await chrome.storage.local.get("recent");
const list = document.getElementById("recent");
document.getElementById("empty").hidden = recent.length > 0;
for (const entry of recent) {
  const li = document.createElement("li");
  const label = document.createElement("span");
  label.className = entry.label;
  label.textContent = `${entry.label} ${typeof entry.score === "number" ? (entry.score * 100).toFixed(1) + "%" : ""}`;
  const where = document.createElement("div");
  where.textContent = `${entry.imageUrl} — ${entry.at.slice(0, 19).replace("T", " ")}`;
  li.append(label, where);
  list.appendChild(li);
}

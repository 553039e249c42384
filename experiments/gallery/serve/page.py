"""The search page served at `/`: one HTML file with its script inline, no build step.

Each drop zone is a transparent file input laid over a box, so dropping a file and clicking to
choose one are both the browser's own behaviour; the script previews, posts the form to
`/search` and lays out the ranked thumbnails.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>OmniReID search</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; background: #fafafa; }
  h1 { font-size: 1.3rem; margin: 0 0 1rem; }
  form { display: flex; gap: 1rem; flex-wrap: wrap; align-items: stretch; }
  .zone { position: relative; width: 150px; height: 200px; border: 2px dashed #999;
          border-radius: 8px; background: #fff; display: flex; flex-direction: column;
          align-items: center; justify-content: center; text-align: center; font-size: .85rem; }
  .zone.over { border-color: #2c7be5; background: #eef4ff; }
  .zone.filled { border-style: solid; border-color: #2c7be5; }
  .zone input { position: absolute; inset: 0; opacity: 0; cursor: pointer; }
  .zone img { width: 120px; height: 140px; object-fit: contain; display: none; }
  .zone.filled img { display: block; }
  .zone .clear { position: absolute; top: 2px; right: 6px; z-index: 2; display: none;
                 cursor: pointer; color: #c00; font-weight: bold; }
  .zone.filled .clear { display: block; }
  .side { display: flex; flex-direction: column; gap: .5rem; min-width: 260px; }
  textarea { width: 320px; height: 120px; font: inherit; }
  button { padding: .5rem 1.2rem; font-size: 1rem; cursor: pointer; }
  #status { margin: 1rem 0; min-height: 1.2rem; }
  #status.error { color: #b00; }
  #results { display: flex; flex-wrap: wrap; gap: .6rem; }
  .hit { width: 104px; background: #fff; border: 1px solid #ddd; border-radius: 6px;
         padding: 4px; text-align: center; font-size: .75rem; }
  .hit img { width: 96px; height: 192px; object-fit: contain; background: #eee; }
  .hit .rank { font-weight: bold; }
</style>
</head>
<body>
<h1>OmniReID: search the gallery</h1>
<form id="query">
  <label class="zone" id="zone-nir">infrared<br>drop or click
    <img alt="infrared query"><span class="clear" title="remove">&times;</span>
    <input type="file" name="nir" accept="image/*"></label>
  <label class="zone" id="zone-sk">sketch<br>drop or click
    <img alt="sketch query"><span class="clear" title="remove">&times;</span>
    <input type="file" name="sk" accept="image/*"></label>
  <label class="zone" id="zone-cp">colour pencil<br>drop or click
    <img alt="colour pencil query"><span class="clear" title="remove">&times;</span>
    <input type="file" name="cp" accept="image/*"></label>
  <div class="side">
    <label for="text">caption</label>
    <textarea id="text" name="text"
      placeholder="a woman in a red coat with a black backpack"></textarea>
    <label>top <input id="top" name="top" type="number" min="1" max="100" value="10"></label>
    <button id="go" type="submit">Search</button>
  </div>
</form>
<div id="status"></div>
<div id="results"></div>
<script>
const form = document.getElementById("query");
const status = document.getElementById("status");
const results = document.getElementById("results");

for (const zone of document.querySelectorAll(".zone")) {
  const input = zone.querySelector("input");
  const img = zone.querySelector("img");
  input.addEventListener("dragenter", () => zone.classList.add("over"));
  input.addEventListener("dragleave", () => zone.classList.remove("over"));
  input.addEventListener("drop", () => zone.classList.remove("over"));
  input.addEventListener("change", () => {
    const file = input.files[0];
    zone.classList.toggle("filled", !!file);
    if (file) img.src = URL.createObjectURL(file);
  });
  zone.querySelector(".clear").addEventListener("click", (event) => {
    event.preventDefault();
    input.value = "";
    zone.classList.remove("filled");
  });
}

function say(text, error) {
  status.textContent = text;
  status.className = error ? "error" : "";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = new FormData();
  for (const name of ["nir", "sk", "cp"]) {
    const file = form.elements[name].files[0];
    if (file) body.append(name, file);
  }
  const text = form.elements.text.value.trim();
  if (text) body.append("text", text);
  body.append("top", form.elements.top.value || "10");
  say("searching...");
  results.innerHTML = "";
  const started = performance.now();
  try {
    const answer = await fetch("search", { method: "POST", body });
    const data = await answer.json();
    if (!answer.ok) { say(data.detail || answer.statusText, true); return; }
    const ms = Math.round(performance.now() - started);
    say(`${data.results.length} results in ${ms} ms`);
    for (const r of data.results) {
      const hit = document.createElement("div");
      hit.className = "hit";
      const ident = r.identity === null ? "-" : String(r.identity).padStart(4, "0");
      hit.innerHTML = `<img alt=""><div class="rank">#${r.rank}</div>` +
        `<div class="score">${r.score.toFixed(3)}</div><div>id ${ident}</div>`;
      hit.querySelector("img").src = r.thumbnail;
      hit.title = r.path;
      results.appendChild(hit);
    }
  } catch (err) {
    say(String(err), true);
  }
});
</script>
</body>
</html>
"""

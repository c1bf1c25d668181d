// The API reference's small helpers: filter the endpoints as you type, and
// copy an example request. The page reads fine without them.
"use strict";
(function () {
  const filter = document.getElementById("filter");
  const ops = Array.from(document.querySelectorAll("article.op"));
  const links = Array.from(document.querySelectorAll("nav li li"));
  function apply() {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = new Set();
    for (const op of ops) {
      const text = op.textContent.toLowerCase();
      const ok = words.every((w) => text.includes(w));
      op.hidden = !ok;
      if (ok) shown.add("#" + op.id);
    }
    for (const li of links) {
      const a = li.querySelector("a");
      li.hidden = !shown.has(a.getAttribute("href"));
    }
    for (const sec of document.querySelectorAll("section.tag")) {
      sec.hidden = !sec.querySelector("article.op:not([hidden])");
    }
  }
  filter.addEventListener("input", apply);
  for (const b of document.querySelectorAll("button.copy")) {
    b.addEventListener("click", async () => {
      const code = b.parentElement.querySelector("code").textContent;
      try {
        await navigator.clipboard.writeText(code);
        b.textContent = "Copied";
      } catch (e) {
        const r = document.createRange();
        r.selectNodeContents(b.parentElement.querySelector("code"));
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(r);
        b.textContent = "Selected: press Ctrl+C";
      }
      setTimeout(() => { b.textContent = "Copy"; }, 2000);
    });
  }
})();

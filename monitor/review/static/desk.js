// Keyboard shortcuts for the review queue: j/k move, c confirm, r reject, o open.
// Shipped with the project (no CDN); loaded as a file, never inline (the pages' CSP forbids inline scripts).
(function () {
  "use strict";
  function items() { return Array.prototype.slice.call(document.querySelectorAll("li.story")); }
  var current = -1;
  function focus(i) {
    var list = items();
    if (!list.length) { return; }
    current = Math.max(0, Math.min(list.length - 1, i));
    list.forEach(function (el, n) { el.classList.toggle("focused", n === current); });
    list[current].scrollIntoView({ block: "nearest" });
  }
  function press(selector) {
    var list = items();
    if (current < 0 || !list[current]) { return; }
    var target = list[current].querySelector(selector);
    if (target) { target.click(); }
  }
  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (event.key === "j") { focus(current + 1); }
    else if (event.key === "k") { focus(current - 1); }
    else if (event.key === "c") { press("button.confirm"); }
    else if (event.key === "r") { press("button.reject"); }
    else if (event.key === "o") { press("a.open"); }
  });
})();

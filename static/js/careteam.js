// The phone menu: the top bar's links fold behind a "Menu" button below 640 px.
// Without JavaScript the links simply stay visible (the fold needs the "js" class).
document.documentElement.classList.add("js");
document.addEventListener("click", function (event) {
  var button = event.target.closest(".menu-toggle");
  if (!button) return;
  var bar = button.closest(".topbar");
  var open = bar.classList.toggle("open");
  button.setAttribute("aria-expanded", open ? "true" : "false");
});

// <a data-history-back href="fallback">: back to the previous page when there is one
document.addEventListener("click", function (event) {
  var link = event.target.closest("a[data-history-back]");
  if (link && window.history.length > 1) {
    event.preventDefault();
    window.history.back();
  }
});

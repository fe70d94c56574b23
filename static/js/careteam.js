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

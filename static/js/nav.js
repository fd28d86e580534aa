// The main navigation as a menu on narrow screens: the button opens and closes it (CSS hides it only
// once this script runs, so without scripts the links stay in view).
document.addEventListener("DOMContentLoaded", () => {
  const toggle = document.querySelector(".nav-toggle");
  const nav = document.querySelector(".mainnav");
  if (!toggle || !nav) return;
  toggle.closest(".topbar").classList.add("has-nav-menu");
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    nav.classList.toggle("open", open);
  });
});

// The nav's "Menu" toggle on narrow screens (base.html, portal.css). Without this script the
// links simply wrap under the brand; with it they fold behind the button until it is pressed.
(() => {
  const header = document.querySelector('[data-nav]');
  const toggle = header?.querySelector('[data-nav-toggle]');
  if (!header || !toggle) return;
  const isOpen = () => toggle.getAttribute('aria-expanded') === 'true';
  const setOpen = (open) => {
    header.classList.toggle('nav-open', open);
    toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
  };
  header.classList.add('nav-collapsible');
  toggle.hidden = false;
  toggle.addEventListener('click', () => setOpen(!isOpen()));
  header.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || !isOpen()) return;
    setOpen(false);
    toggle.focus();
  });
})();

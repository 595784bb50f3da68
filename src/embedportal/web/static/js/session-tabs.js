// Tells this browser's other tabs of a sign-out and a sign-in, so an open report says "you are
// signed out" at once and comes back by itself after a sign-in (viewer.js listens on the same
// BroadcastChannel). The sign-out is announced by the page that follows it, once the session
// has really ended; a sign-in by every page of a signed-in person (only signed-out viewers act
// on it). Loaded by base.html on every page; a classic script, so `currentScript` names it.
(function () {
  if (typeof BroadcastChannel !== 'function') return;
  var signedIn = document.currentScript && document.currentScript.dataset.signedIn === 'true';
  var channel = new BroadcastChannel('embedportal-session');
  var key = 'embedportal-signed-out';
  try {
    if (sessionStorage.getItem(key)) {
      sessionStorage.removeItem(key);
      channel.postMessage({ type: 'signed-out' });
    }
  } catch (error) {
    // storage refused: the push channel still tells the other tabs
  }
  if (signedIn) channel.postMessage({ type: 'signed-in' });
  document.addEventListener('submit', function (event) {
    if (!event.target.matches('form[data-sign-out]')) return;
    try {
      sessionStorage.setItem(key, '1');
    } catch (error) {
      // see above
    }
  });
})();

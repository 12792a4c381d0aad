// earshot login: when the server has a password, shows a login form until the browser holds a
// token (an HttpOnly cookie the page never sees), and a "Log out" button after.
//
// The player uses `window.earshotAuth`:
//   await earshotAuth.ready     before opening /ws (resolves at once when no password is set)
//   await earshotAuth.check()   after a WebSocket closed before its hello (a 401 is invisible
//                               to WebSocket code): shows the form again if the login expired
//   'earshot:logout' event      on window, when the user logged out: stop playing
'use strict';
(() => {
  let unlock = null;
  const auth = { ready: Promise.resolve(), check, logout };
  window.earshotAuth = auth;

  const form = document.createElement('form');
  form.id = 'login';
  form.hidden = true;
  form.innerHTML =
    '<label for="login-password">Password</label> ' +
    '<input id="login-password" type="password" autocomplete="current-password" required> ' +
    '<button type="submit">Log in</button>' +
    '<p id="login-message" role="alert"></p>';
  const logoutButton = document.createElement('button');
  logoutButton.id = 'logout';
  logoutButton.type = 'button';
  logoutButton.textContent = 'Log out';
  logoutButton.hidden = true;
  const place = document.querySelector('main') || document.body;
  place.prepend(form, logoutButton);
  const input = form.querySelector('input');
  const message = form.querySelector('#login-message');

  function hold() {
    if (!unlock) auth.ready = new Promise((resolve) => { unlock = resolve; });
  }

  function lock() {
    hold();
    form.hidden = false;
    logoutButton.hidden = true;
    input.focus();
  }

  function open(authRequired) {
    form.hidden = true;
    logoutButton.hidden = !authRequired;
    message.textContent = '';
    if (unlock) { unlock(); unlock = null; }
  }

  let authRequired = null; // unknown until /api/session first answers

  async function check() {
    // Without a password there is nothing to re-check, and asking while the server is down only
    // fills the console with refused requests.
    if (authRequired === false) return auth.ready;
    try {
      const session = await (await fetch('/api/session', { cache: 'no-store' })).json();
      authRequired = Boolean(session.auth_required);
      if (session.auth_required && !session.authenticated) lock();
      else open(session.auth_required);
    } catch (e) {
      open(false); // the server is unreachable: let the player report that
    }
    return auth.ready;
  }

  async function logout() {
    await fetch('/api/logout', { method: 'POST' }).catch(() => {});
    window.dispatchEvent(new Event('earshot:logout'));
    lock();
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.textContent = '';
    let reply;
    try {
      reply = await fetch('/api/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ password: input.value }),
      });
    } catch (e) {
      message.textContent = 'The server cannot be reached.';
      return;
    }
    if (reply.ok) {
      input.value = '';
      open(true);
      window.dispatchEvent(new Event('earshot:login'));
      return;
    }
    const reason = (await reply.json().catch(() => ({}))).error || reply.statusText;
    if (reply.status === 401) message.textContent = 'Wrong password.';
    else if (reply.status === 429) {
      message.textContent =
        `Too many attempts. Try again in ${reply.headers.get('Retry-After') || 60} s.`;
    } else message.textContent = `Login failed: ${reason}`;
    input.select();
  });
  logoutButton.addEventListener('click', logout);

  hold(); // until /api/session answers, without flashing the form
  check();
})();

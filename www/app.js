// earshot page: placeholder until the browser player lands; shows the stream's hello.
'use strict';
document.getElementById('toggle').addEventListener('click', async () => {
  await window.earshotAuth?.ready; // login.js: resolves once the server lets us listen
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  ws.onmessage = (e) => {
    if (typeof e.data === 'string') document.getElementById('status').textContent = e.data;
  };
});

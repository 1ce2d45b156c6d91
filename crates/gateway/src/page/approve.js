// The approval page's glue: "Approve" asks the server for a passkey challenge, runs the
// ceremony (portcullisAssert, from the approver crate's script served above), and posts the
// passkey's answer back. The server decides; this only shows what it said.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  const button = document.getElementById('approve');
  const status = document.getElementById('status');
  if (!button || !status) {
    return;
  }
  button.addEventListener('click', async () => {
    const headers = { 'x-portcullis-token': button.dataset.token };
    const base = window.location.pathname;
    button.disabled = true;
    status.textContent = 'Waiting for your passkey…';
    try {
      const challenge = await fetch(`${base}/challenge`, { method: 'POST', headers });
      if (!challenge.ok) {
        throw new Error(await challenge.text());
      }
      const answer = await portcullisAssert(await challenge.json());
      const approved = await fetch(`${base}/approve`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify(answer),
      });
      status.textContent = await approved.text();
      if (!approved.ok) {
        button.disabled = false;
      }
    } catch (error) {
      status.textContent = `Not approved: ${error.message || error}`;
      button.disabled = false;
    }
  });
});

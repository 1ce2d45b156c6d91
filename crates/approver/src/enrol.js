// The enrolment page's button: runs portcullisEnrol (ceremony.js) against this page's own
// token-bound endpoints and says what happened. Text only, never HTML, goes into the page.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  const button = document.getElementById('enrol');
  const status = document.getElementById('status');
  const post = async (path, body) => {
    const answer = await fetch(location.pathname + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      cache: 'no-store',
    });
    const json = await answer.json().catch(() => ({}));
    if (!answer.ok) {
      throw new Error(json.error || `the page answered ${answer.status}`);
    }
    return json;
  };
  button.addEventListener('click', async () => {
    button.disabled = true;
    status.textContent = 'Waiting for your passkey…';
    try {
      const options = await post('/options', {});
      const response = await portcullisEnrol(options);
      const done = await post('/finish', response);
      status.textContent = `Passkey enrolled for ${done.name}. You can close this page.`;
    } catch (error) {
      status.textContent = `Not enrolled: ${error.message}`;
      button.disabled = false;
    }
  });
});

/* The check-in kiosk: posts the ticket number to the demo backend, which adds it to the
 * waiting-room list and publishes patient.checked_in. */
(function () {
  "use strict";

  const form = document.getElementById("checkin");
  const input = document.getElementById("ticket");
  const button = document.getElementById("submit");
  const result = document.getElementById("result");

  function say(text, kind) {
    result.textContent = text;
    result.className = "result " + kind;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    button.disabled = true;
    try {
      const r = await fetch("/demo/api/check-in", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ticket: input.value }),
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) {
        say((body.error && body.error.message) || "Check-in failed (HTTP " + r.status + "). Please ask at the desk.", "error");
      } else {
        const done = body.already_checked_in ? " is already checked in." : " is checked in.";
        say(body.ticket + done + " Please take a seat.", "ok");
        input.value = "";
      }
    } catch (err) {
      say("The check-in service cannot be reached. Please ask at the desk.", "error");
    } finally {
      button.disabled = false;
      input.focus();
    }
  });
})();

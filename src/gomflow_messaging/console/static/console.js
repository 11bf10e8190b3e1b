// The order page refreshes itself when a payment or a message status changes: it polls the
// page's JSON every few seconds and reloads when its version moves. Nothing else runs here.
"use strict";
(function () {
  var marker = document.getElementById("poll");
  if (!marker) { return; }
  var url = marker.getAttribute("data-poll");
  var version = marker.getAttribute("data-version");
  function check() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data && data.version !== version) { window.location.reload(); }
      })
      .catch(function () {});
  }
  window.setInterval(check, 5000);
})();

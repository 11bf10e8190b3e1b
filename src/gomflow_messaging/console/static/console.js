// The order page refreshes itself when a payment or a message status changes: it polls the
// page's JSON every few seconds and reloads when its version moves. It sends the version it
// shows as If-None-Match, so an unchanged order answers 304 with no body. Nothing else runs here.
"use strict";
(function () {
  var marker = document.getElementById("poll");
  if (!marker) { return; }
  var url = marker.getAttribute("data-poll");
  var version = marker.getAttribute("data-version");
  var headers = { Accept: "application/json", "If-None-Match": '"' + version + '"' };
  function check() {
    fetch(url, { credentials: "same-origin", headers: headers })
      .then(function (r) { return r.status === 200 ? r.json() : null; })
      .then(function (data) {
        if (data && data.version !== version) { window.location.reload(); }
      })
      .catch(function () {});
  }
  window.setInterval(check, 5000);
})();

// Refreshes the live part of the dashboard every period without reloading the page.
// The fragment comes from /partials/status (never /api/...: the Ingress sends /api to
// the gateway). A failed refresh shows a notice and the next one tries again.
"use strict";
(function () {
  var live = document.getElementById("live");
  var notice = document.getElementById("conn");
  if (!live || !notice) return;
  var period = Number(live.dataset.refresh) || 5000;

  function done(ok) {
    notice.hidden = ok;
    live.classList.toggle("outdated", !ok);
    setTimeout(refresh, period);
  }

  function refresh() {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, period);
    fetch(live.dataset.src, { cache: "no-store", signal: controller.signal })
      .then(function (res) {
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        done(true);
      })
      .catch(function () { done(false); })
      .finally(function () { clearTimeout(timer); });
  }

  setTimeout(refresh, period);
})();

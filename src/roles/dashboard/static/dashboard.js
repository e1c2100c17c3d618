// Refreshes the live part of the dashboard every period without reloading the page.
// The fragment comes from /partials/status (never /api/...: the Ingress sends /api to
// the gateway). A failed refresh shows a notice and the next one tries again.
// The filter box is a plain GET form; here it narrows the list as one types, by
// fetching the same fragment with the form's query. Groups opened by hand stay open
// across refreshes.
"use strict";
(function () {
  var live = document.getElementById("live");
  var notice = document.getElementById("conn");
  if (!live || !notice) return;
  var period = Number(live.dataset.refresh) || 5000;
  var timer = null;
  var serial = 0;

  function done(ok) {
    notice.hidden = ok;
    live.classList.toggle("outdated", !ok);
    clearTimeout(timer);
    timer = setTimeout(refresh, period);
  }

  function openGroups() {
    var open = {};
    live.querySelectorAll("details.group").forEach(function (d) {
      open[d.dataset.group] = d.open;
    });
    return open;
  }

  function refresh() {
    var mine = ++serial;
    var controller = new AbortController();
    var abort = setTimeout(function () { controller.abort(); }, period);
    fetch(live.dataset.src, { cache: "no-store", signal: controller.signal })
      .then(function (res) {
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.text();
      })
      .then(function (html) {
        // A newer request (the filter changed) wins.
        if (mine !== serial) return;
        var open = openGroups();
        live.innerHTML = html;
        live.querySelectorAll("details.group").forEach(function (d) {
          if (d.dataset.group in open) d.open = open[d.dataset.group];
        });
        done(true);
      })
      .catch(function () { if (mine === serial) done(false); })
      .finally(function () { clearTimeout(abort); });
  }

  var form = document.getElementById("filter");
  if (form) {
    var typing = null;
    var apply = function () {
      var params = new URLSearchParams();
      new FormData(form).forEach(function (value, key) {
        if (value !== "") params.append(key, value);
      });
      var query = params.toString() ? "?" + params.toString() : "";
      live.dataset.src = "/partials/status" + query;
      history.replaceState(null, "", "/" + query);
      refresh();
    };
    form.addEventListener("input", function () {
      clearTimeout(typing);
      typing = setTimeout(apply, 200);
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      clearTimeout(typing);
      apply();
    });
  }

  timer = setTimeout(refresh, period);
})();

// The console's conveniences. Every page works without this script; with it:
// - sections marked data-live refresh in place when the node reports a change (server-sent
//   events from /api/v1/events), by asking the server for that section only;
// - forms marked data-upload show the upload's progress;
// - buttons marked data-confirm ask first.
(function () {
  "use strict";

  var live = document.querySelectorAll("[data-live]");
  if (live.length && window.EventSource) {
    var tx = document.body.getAttribute("data-tx");
    var source = new EventSource("/api/v1/events" + (tx ? "?tx=" + encodeURIComponent(tx) : ""));
    var timer = null;
    var refresh = function () {
      if (timer) return;
      timer = setTimeout(function () {
        timer = null;
        document.querySelectorAll("[data-live]").forEach(function (section) {
          fetch(window.location.href, {
            headers: { "X-Console-Fragment": section.id },
            credentials: "same-origin"
          }).then(function (response) {
            return response.ok ? response.text() : null;
          }).then(function (html) {
            if (html === null) return;
            var holder = document.createElement("div");
            holder.innerHTML = html;
            var fresh = holder.querySelector("#" + section.id);
            if (fresh) section.replaceWith(fresh);
          }).catch(function () {});
        });
      }, 250);
    };
    ["transaction_stored", "task_changed", "lagged"].forEach(function (kind) {
      source.addEventListener(kind, refresh);
    });
    // Changes between the page's rendering and the stream's (re)connection are fetched too.
    source.addEventListener("open", function () {
      document.body.setAttribute("data-live-connected", "true");
      refresh();
    });
  }

  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.FormData || !window.XMLHttpRequest) return;
      event.preventDefault();
      var bar = form.querySelector(".upload-progress");
      var meter = bar && bar.querySelector("progress");
      var label = bar && bar.querySelector("output");
      if (bar) bar.hidden = false;
      var request = new XMLHttpRequest();
      request.open(form.method || "POST", form.action);
      request.setRequestHeader("Accept", "text/html");
      request.setRequestHeader("X-Console-Upload", "1");
      request.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable || !meter) return;
        meter.max = e.total;
        meter.value = e.loaded;
        if (label) label.textContent = Math.round((100 * e.loaded) / e.total) + "%";
      });
      request.addEventListener("load", function () {
        var next = request.getResponseHeader("X-Console-Location");
        if (next) {
          window.location.assign(next);
        } else {
          document.open();
          document.write(request.responseText);
          document.close();
        }
      });
      request.addEventListener("error", function () {
        if (label) label.textContent = "The upload failed; check the connection and try again.";
      });
      request.send(new FormData(form));
    });
  });

  // Delegated, so buttons in refreshed live sections ask too.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
  });
})();

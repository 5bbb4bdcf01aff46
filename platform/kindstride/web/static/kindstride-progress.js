/* kindstride: a long job's progress bar that updates itself. A section[data-ks-progress="<JSON address>"]
 * marked data-ks-progress-active holds a <progress> and a role=status text; while the job runs, this asks
 * the address once a second and shows its {state, done, total, active, text}. Without JavaScript the page
 * shows the bar as it was when loaded, and a refresh shows it again. A section also marked
 * data-ks-progress-reload loads the page again once the job has ended, to show what the job produced. */
(function () {
  "use strict";
  var INTERVAL_MS = 1000;
  Array.prototype.forEach.call(document.querySelectorAll("[data-ks-progress][data-ks-progress-active]"),
    function (section) {
      var url = section.getAttribute("data-ks-progress");
      var bar = section.querySelector("progress");
      var text = section.querySelector("[role=status]");
      var refresh = section.querySelector("[data-ks-progress-refresh]");
      var failures = 0;

      function show(status) {
        if (status.total) {
          bar.max = status.total;
          bar.value = status.done;
        } else if (status.state === "done") {
          bar.max = 1;
          bar.value = 1;
        }
        bar.textContent = status.percent + "%";
        if (status.text && text.textContent !== status.text) {
          text.textContent = status.text;
        }
        section.classList.toggle("ks-job-failed", status.state === "failed");
        section.setAttribute("data-ks-progress-state", status.state || "");
      }

      function poll() {
        fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}, cache: "no-store"})
          .then(function (response) {
            if (!response.ok) {
              throw new Error(String(response.status));
            }
            return response.json();
          })
          .then(function (status) {
            failures = 0;
            show(status);
            if (status.active) {
              window.setTimeout(poll, INTERVAL_MS);
            } else if (section.hasAttribute("data-ks-progress-reload")) {
              window.location.reload();
            } else {
              section.removeAttribute("data-ks-progress-active");
              if (refresh) {
                refresh.hidden = true;
              }
            }
          })
          .catch(function () {
            failures += 1; // signed out, offline: try a few more times, then leave the refresh link
            if (failures < 5) {
              window.setTimeout(poll, INTERVAL_MS * failures * 2);
            }
          });
      }

      window.setTimeout(poll, INTERVAL_MS);
    });
})();

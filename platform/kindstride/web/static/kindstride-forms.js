/* kindstride: small form helpers, for pages that load this file (the donate form).
 * - form[data-ks-once]: after the first submit its buttons wait, so a double click sends the form once
 *   (the server also recognises a repeat by the form's idempotency key).
 * - Typing "another amount" selects its radio button. */
(function () {
  "use strict";
  var forms = document.querySelectorAll("form[data-ks-once]");
  Array.prototype.forEach.call(forms, function (form) {
    form.addEventListener("submit", function () {
      window.setTimeout(function () {
        Array.prototype.forEach.call(form.querySelectorAll("button[type=submit]"), function (button) {
          button.disabled = true;
        });
      }, 0);
    });
  });
  // Coming back with the browser's Back button: the buttons work again.
  window.addEventListener("pageshow", function () {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-ks-once] button[type=submit]"), function (b) {
      b.disabled = false;
    });
  });
  var other = document.getElementById("f-other_amount");
  var otherChoice = document.getElementById("preset-other");
  if (other && otherChoice) {
    other.addEventListener("input", function () {
      if (other.value.trim()) {
        otherChoice.checked = true;
      }
    });
  }
})();

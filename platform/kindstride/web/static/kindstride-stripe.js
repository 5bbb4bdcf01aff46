/* kindstride: the card page. Mounts Stripe's Payment Element and confirms the payment with Stripe.js.
 * Everything comes from the form's data- attributes (the Content-Security-Policy allows no inline script):
 * data-publishable-key, data-client-secret, data-return-url (where Stripe sends the payer back, also after
 * 3-D Secure), data-locale, and the messages data-msg-working / -failed / -unavailable.
 * Without JavaScript the pay button stays disabled and the page says that nothing was charged. */
(function () {
  "use strict";
  var form = document.getElementById("ks-stripe-form");
  if (!form) {
    return;
  }
  var data = form.dataset;
  var status = document.getElementById("ks-stripe-status");
  var button = form.querySelector("button[type=submit]");
  var note = document.querySelector(".ks-js-note");

  function say(text) {
    status.textContent = text || "";
  }

  if (note) {
    note.hidden = true;
  }
  if (typeof window.Stripe !== "function") {
    say(data.msgUnavailable);
    return;
  }
  var stripe = window.Stripe(data.publishableKey, { locale: data.locale || "auto" });
  if (typeof stripe.confirmPayment !== "function") {
    say(data.msgUnavailable); // a Stripe.js stand-in without the Payment Element
    return;
  }
  var elements = stripe.elements({ clientSecret: data.clientSecret, locale: data.locale || "auto" });
  var payment = elements.create("payment");
  payment.mount("#ks-payment-element");
  payment.on("ready", function () {
    button.disabled = false;
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (button.disabled) {
      return;
    }
    button.disabled = true;
    say(data.msgWorking);
    stripe.confirmPayment({ elements: elements, confirmParams: { return_url: data.returnUrl } }).then(
      function (result) {
        // Reached only when the payment could not be confirmed: otherwise Stripe.js leaves for return_url.
        say((result && result.error && result.error.message) || data.msgFailed);
        button.disabled = false;
      },
      function () {
        say(data.msgFailed);
        button.disabled = false;
      }
    );
  });
})();

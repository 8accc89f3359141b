/* The hosted payment page's only script (first party, listed with its SRI hash in
 * inventory.json). Comfort, not authority: it formats the card number, checks Luhn,
 * brand, expiry and the security code's length as the customer types, and tells the
 * server which fields look complete (never their contents) so the agent can follow.
 * The server's card capture judges the card again; the form works without this file.
 */
(function () {
  "use strict";

  var BRANDS = [
    { name: "amex", re: /^3[47]/, lengths: [15], cvc: 4, groups: [4, 6, 5] },
    { name: "diners", re: /^3(0[0-5]|095|[689])/, lengths: [14, 15, 16, 17, 18, 19], cvc: 3 },
    { name: "jcb", re: /^35(2[89]|[3-8])/, lengths: [16, 17, 18, 19], cvc: 3 },
    { name: "visa", re: /^4/, lengths: [13, 16, 19], cvc: 3 },
    { name: "mastercard", re: /^(5[1-5]|2(2[2-9]|[3-6]|7[01]|720))/, lengths: [16], cvc: 3 },
    { name: "discover", re: /^(6011|64[4-9]|65)/, lengths: [16, 17, 18, 19], cvc: 3 },
    { name: "unionpay", re: /^(62|81)/, lengths: [16, 17, 18, 19], cvc: 3 },
    { name: "maestro", re: /^(5018|5020|5038|5893|6304|6759|676[1-3])/,
      lengths: [13, 14, 15, 16, 17, 18, 19], cvc: 3 }
  ];

  function digits(text) { return (text || "").replace(/\D/g, ""); }

  function brandOf(number) {
    for (var i = 0; i < BRANDS.length; i++) {
      if (BRANDS[i].re.test(number)) { return BRANDS[i]; }
    }
    return null;
  }

  function luhn(number) {
    var sum = 0;
    for (var i = 0; i < number.length; i++) {
      var d = number.charCodeAt(number.length - 1 - i) - 48;
      if (i % 2 === 1) { d *= 2; if (d > 9) { d -= 9; } }
      sum += d;
    }
    return sum % 10 === 0;
  }

  function groupsFor(number) {
    var brand = brandOf(number);
    return brand && brand.groups ? brand.groups : [4, 4, 4, 4, 3];
  }

  function formatNumber(number) {
    var groups = groupsFor(number), out = [], at = 0;
    for (var i = 0; i < groups.length && at < number.length; i++) {
      out.push(number.slice(at, at + groups[i]));
      at += groups[i];
    }
    return out.join(" ");
  }

  function checkNumber(value) {
    var number = digits(value);
    if (!number) { return { complete: false, message: "Enter your card number." }; }
    var brand = brandOf(number);
    var lengths = brand ? brand.lengths : [13, 14, 15, 16, 17, 18, 19];
    if (number.length < Math.min.apply(null, lengths)) {
      return { complete: false, message: "The card number is too short." };
    }
    if (lengths.indexOf(number.length) < 0 || !luhn(number)) {
      return { complete: true, message: "This card number is not valid. Please check it." };
    }
    return { complete: true, message: "" };
  }

  function checkExpiry(value) {
    var text = digits(value);
    if (text.length === 6) { text = text.slice(0, 2) + text.slice(4); }
    if (text.length < 4) { return { complete: false, message: "Enter the expiry date as MM/YY." }; }
    var month = parseInt(text.slice(0, 2), 10), year = 2000 + parseInt(text.slice(2, 4), 10);
    if (month < 1 || month > 12) {
      return { complete: true, message: "The month must be between 01 and 12." };
    }
    var now = new Date();
    if (year * 12 + month < now.getFullYear() * 12 + now.getMonth() + 1) {
      return { complete: true, message: "This card has expired." };
    }
    return { complete: true, message: "" };
  }

  function checkCvc(value, number) {
    var code = digits(value), brand = brandOf(digits(number));
    var length = brand ? brand.cvc : 3;
    if (!code) { return { complete: false, message: "Enter the security code." }; }
    if (code.length !== length || code.length !== (value || "").trim().length) {
      return { complete: code.length >= length,
               message: "The security code has " + length + " digits." };
    }
    return { complete: true, message: "" };
  }

  function checkName(value) {
    var text = (value || "").trim();
    if (!text) { return { complete: false, message: "Enter your name as it is written on the card." }; }
    return { complete: true, message: "" };
  }

  // The server's rule (billing_postcode): trimmed, upper case, single spaces; 3-10
  // letters, digits, spaces or hyphens, with a letter or digit at each end.
  var POSTCODE = /^[A-Z0-9](?:[A-Z0-9 -]*[A-Z0-9])?$/;

  function checkPostcode(value) {
    var text = (value || "").trim().replace(/\s+/g, " ").toUpperCase();
    if (!text) { return { complete: false, message: "Enter your billing postcode." }; }
    if (text.length < 3 || text.length > 10 || !POSTCODE.test(text)) {
      return { complete: text.length >= 3,
               message: "Enter a postcode of 3 to 10 letters, numbers, spaces or hyphens." };
    }
    return { complete: true, message: "" };
  }

  function reportProgress(form, field, result) {
    if (!field) { return; }
    var state = result.complete ? (result.message ? "invalid" : "valid") : "incomplete";
    if (form.getAttribute("data-last-" + field) === state) { return; }
    form.setAttribute("data-last-" + field, state);
    if (!window.fetch) { return; }
    window.fetch("/pay/progress", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": form.getAttribute("data-csrf") },
      body: JSON.stringify({
        field: field,
        complete: result.complete && !result.message,
        valid: result.complete ? !result.message : null
      })
    }).catch(function () { /* the agent's view is a convenience; the payment is not */ });
  }

  function setUpForm(form) {
    var number = document.getElementById("number");
    var inputs = [
      { field: "pan", el: number, check: function () { return checkNumber(number.value); } },
      { field: "expiry", el: document.getElementById("expiry"),
        check: function () { return checkExpiry(document.getElementById("expiry").value); } },
      { field: "cvv", el: document.getElementById("cvc"),
        check: function () { return checkCvc(document.getElementById("cvc").value, number.value); } }
    ];
    var name = document.getElementById("name");
    if (name) {
      // Not reported to the agent: a name is no card field, and its progress says nothing.
      inputs.unshift({ field: null, el: name, check: function () { return checkName(name.value); } });
    }
    var postcode = document.getElementById("postcode");
    if (postcode) {
      inputs.push({ field: "postcode", el: postcode,
                    check: function () { return checkPostcode(postcode.value); } });
    }

    function show(item, result, final) {
      var error = document.getElementById(item.el.getAttribute("aria-describedby").split(" ").pop());
      var bad = !!result.message && (final || result.complete);
      error.textContent = bad ? result.message : "";
      item.el.setAttribute("aria-invalid", bad ? "true" : "false");
      item.el.classList.toggle("valid", result.complete && !result.message);
    }

    number.addEventListener("input", function () {
      var raw = digits(number.value).slice(0, 19);
      var formatted = formatNumber(raw);
      if (formatted !== number.value) { number.value = formatted; }
    });
    var expiry = document.getElementById("expiry");
    expiry.addEventListener("input", function (event) {
      var raw = digits(expiry.value).slice(0, 4);
      if (event.inputType && event.inputType.indexOf("delete") === 0) { return; }
      if (raw.length === 1 && raw > "1") { raw = "0" + raw; }
      expiry.value = raw.length >= 2 ? raw.slice(0, 2) + "/" + raw.slice(2) : raw;
    });

    inputs.forEach(function (item) {
      item.el.addEventListener("blur", function () {
        var result = item.check();
        show(item, result, item.el.value.trim() !== "");
        reportProgress(form, item.field, result);
      });
      item.el.addEventListener("input", function () {
        var result = item.check();
        if (result.complete && !result.message) { show(item, result, false); }
        if (result.complete) { reportProgress(form, item.field, result); }
      });
    });

    form.addEventListener("submit", function (event) {
      var firstBad = null;
      inputs.forEach(function (item) {
        var result = item.check();
        show(item, result, true);
        if (result.message && !firstBad) { firstBad = item.el; }
      });
      if (firstBad) {
        event.preventDefault();
        firstBad.focus();
        return;
      }
      var button = document.getElementById("pay");
      button.disabled = true;
      button.textContent = "Please wait\u2026";
    });
  }

  function poll(state) {
    if (!window.fetch) { return; }
    window.setTimeout(function () {
      window.fetch("/pay/status", { credentials: "same-origin", cache: "no-store" })
        .then(function (response) { return response.json(); })
        .then(function (answer) {
          if (answer.state === "challenge") { window.location.assign("/pay/challenge"); }
          else if (answer.state !== state) { window.location.reload(); }
          else { poll(state); }
        })
        .catch(function () { poll(state); });
    }, 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("card-form");
    if (form) { setUpForm(form); }
    var state = document.body.getAttribute("data-state");
    if (state === "waiting" || state === "agent") { poll(state); }
  });
})();

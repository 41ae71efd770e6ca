// Progressive enhancement only: the form works without this file.
(function () {
  "use strict";
  var form = document.getElementById("cart");
  var total = document.getElementById("cart-total");
  function dollars(cents) {
    return "$" + (Math.floor(cents / 100)).toLocaleString("en-US") + "." + String(cents % 100).padStart(2, "0");
  }
  function update() {
    var sum = 0;
    form.querySelectorAll(".product").forEach(function (item) {
      var input = item.querySelector("input");
      var qty = parseInt(input.value, 10);
      if (qty > 0 && qty <= 99) { sum += qty * parseInt(item.dataset.unitAmount, 10); }
    });
    total.textContent = dollars(sum);
  }
  if (form && total) {
    form.addEventListener("input", update);
    update();
  }
  // A second click while the first is in flight would only reuse the same checkout, but it
  // should not even be possible: disable every submit button once a form is sent.
  document.querySelectorAll("form").forEach(function (f) {
    f.addEventListener("submit", function (event) {
      if (f.dataset.submitted) { event.preventDefault(); return; }
      f.dataset.submitted = "1";
      f.querySelectorAll("button[type=submit]").forEach(function (b) {
        // Keep the clicked button's name/value in the submission before disabling.
        if (b === event.submitter && b.name) {
          var hidden = document.createElement("input");
          hidden.type = "hidden"; hidden.name = b.name; hidden.value = b.value;
          f.appendChild(hidden);
        }
        b.disabled = true;
      });
    });
  });
  document.querySelectorAll("time[data-local-time]").forEach(function (t) {
    var d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d)) {
      t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    }
  });
  // The page may come back from the back/forward cache after a redirect: re-enable buttons.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form").forEach(function (f) {
      delete f.dataset.submitted;
      f.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = false; });
    });
  });
})();

// Progressive enhancement only: every form works without this file, and the server prices
// every cart itself. The CSP allows no inline script or style, so everything lives here and
// only classes and the hidden attribute change the looks.
(function () {
  "use strict";

  var MAX_QUANTITY = 99;
  var CART_KEY = "corner-shop-cart";

  // Same output as the server's `cents` filter: 123456 -> $1,234.56.
  function dollars(cents) {
    return "$" + Math.floor(cents / 100).toLocaleString("en-US") + "." +
      String(cents % 100).padStart(2, "0");
  }

  function storage() {
    try { return window.sessionStorage; } catch (error) { return null; }
  }

  // --- the cart: steppers and a live total ---------------------------------------------------

  var form = document.getElementById("cart");
  var summary = document.getElementById("cart-summary");
  var total = document.getElementById("cart-total");
  var count = document.getElementById("cart-count");

  function cartItems() {
    return Array.prototype.map.call(form.querySelectorAll(".product[data-unit-amount]"), function (item) {
      return {
        item: item,
        input: item.querySelector("input[type=number]"),
        unit: parseInt(item.dataset.unitAmount, 10),
        lineTotal: item.querySelector("[data-line-total]")
      };
    });
  }

  function quantityOf(input) {
    var raw = input.value.trim();
    if (!input.validity.valid) { return null; }
    if (raw === "") { return 0; }
    if (!/^[0-9]{1,2}$/.test(raw)) { return null; }
    return parseInt(raw, 10);
  }

  function updateTotal() {
    var sum = 0, pieces = 0, valid = true, tooMany = null;
    cartItems().forEach(function (entry) {
      var quantity = quantityOf(entry.input);
      entry.input.setAttribute("aria-invalid", quantity === null ? "true" : "false");
      if (quantity === null) { valid = false; }
      if (entry.input.validity.rangeOverflow && !tooMany) { tooMany = entry; }
      var line = "";
      if (quantity !== null && quantity > 0) {
        sum += quantity * entry.unit;
        pieces += quantity;
        line = quantity + " × " + dollars(entry.unit) + " = " + dollars(quantity * entry.unit);
      }
      entry.lineTotal.textContent = line;
    });
    if (!valid) {
      total.textContent = "—";
      count.textContent = tooMany && parseInt(tooMany.input.max, 10) < MAX_QUANTITY ?
        tooMany.item.querySelector("h2").textContent.trim() + ": only " + tooMany.input.max + " left." :
        "Quantities are whole numbers from 0 to " + MAX_QUANTITY + ".";
    } else {
      total.textContent = dollars(sum);
      count.textContent = pieces === 1 ? "1 item" : pieces + " items";
    }
  }

  function addSteppers() {
    cartItems().forEach(function (entry) {
      var input = entry.input;
      var name = entry.item.querySelector("h2").textContent.trim();
      var wrapper = input.parentNode;
      function stepButton(delta, text, label) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "step " + (delta < 0 ? "step-down" : "step-up");
        button.textContent = text;
        button.setAttribute("aria-label", label + " " + name);
        button.setAttribute("aria-controls", input.id);
        // Out of the Tab order: the field itself takes typing and the arrow keys, so keyboard
        // users reach Buy in one Tab per product; the buttons are for pointers and touch.
        button.tabIndex = -1;
        // Sold out: the field is disabled, and so are its buttons.
        button.disabled = input.disabled;
        button.addEventListener("click", function () {
          var current = parseInt(input.value, 10) || 0;
          // The field's max is what is available (at most MAX_QUANTITY).
          var most = parseInt(input.max, 10) || MAX_QUANTITY;
          input.value = String(Math.min(most, Math.max(0, current + delta)));
          input.dispatchEvent(new Event("input", { bubbles: true }));
        });
        return button;
      }
      wrapper.insertBefore(stepButton(-1, "−", "Remove one"), input);
      wrapper.appendChild(stepButton(1, "+", "Add one"));
      wrapper.classList.add("enhanced");
    });
  }

  // Cancelling a checkout comes back to "your cart is below": put back what this tab sent.
  function restoreCart() {
    var store = storage();
    var params = new URLSearchParams(window.location.search);
    if (!store || params.get("notice") !== "cancelled" || document.getElementById("cart-error")) { return; }
    var saved;
    try { saved = JSON.parse(store.getItem(CART_KEY) || "{}"); } catch (error) { return; }
    cartItems().forEach(function (entry) {
      var value = saved[entry.input.name];
      if (typeof value === "string" && /^[0-9]{1,2}$/.test(value)) { entry.input.value = value; }
    });
  }

  function rememberCart() {
    var store = storage();
    if (!store) { return; }
    var saved = {};
    cartItems().forEach(function (entry) { saved[entry.input.name] = entry.input.value.trim(); });
    try { store.setItem(CART_KEY, JSON.stringify(saved)); } catch (error) { /* storage full or off */ }
  }

  if (form && summary && total && count) {
    addSteppers();
    restoreCart();
    form.addEventListener("input", updateTotal);
    form.addEventListener("submit", rememberCart);
    updateTotal();
    summary.hidden = false;
  }

  // A paid order's cart is done with: cancelling a later checkout must not bring it back.
  var result = document.getElementById("order-result");
  if (result && result.dataset.status === "paid" && storage()) {
    storage().removeItem(CART_KEY);
  }

  // --- one submission per form -----------------------------------------------------------------

  // A second click while the first is in flight would only reuse the same checkout, but it
  // should not even be possible: disable every submit button once a form is sent.
  document.querySelectorAll("form").forEach(function (f) {
    f.addEventListener("submit", function (event) {
      if (f.dataset.submitted) { event.preventDefault(); return; }
      f.dataset.submitted = "1";
      f.setAttribute("aria-busy", "true");
      f.querySelectorAll("button[type=submit]").forEach(function (b) {
        // A disabled button is left out of the submission: carry the clicked one's value.
        if (b === event.submitter && b.name) {
          var hidden = document.createElement("input");
          hidden.type = "hidden"; hidden.name = b.name; hidden.value = b.value;
          hidden.dataset.submitter = "1";
          f.appendChild(hidden);
        }
        if (b === event.submitter && b.dataset.busyLabel) {
          b.dataset.idleLabel = b.textContent;
          b.textContent = b.dataset.busyLabel;
        }
        b.disabled = true;
      });
    });
  });

  // The page may come back from the back/forward cache after a redirect: make it usable again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    document.querySelectorAll("form").forEach(function (f) {
      delete f.dataset.submitted;
      f.removeAttribute("aria-busy");
      f.querySelectorAll("input[data-submitter]").forEach(function (i) { i.remove(); });
      f.querySelectorAll("button[type=submit]").forEach(function (b) {
        if (b.dataset.idleLabel) { b.textContent = b.dataset.idleLabel; delete b.dataset.idleLabel; }
        b.disabled = false;
      });
    });
    if (form && total) { updateTotal(); }
  });

  // --- dates in the customer's own time zone and language --------------------------------------

  document.querySelectorAll("time[data-local-time]").forEach(function (t) {
    var d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d)) {
      t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    }
  });
})();

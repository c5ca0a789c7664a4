/* Small behaviours of every page, kept out of the HTML so the Content-Security-Policy needs
   no inline script (ADR 0022). Each is an enhancement: the pages work without it. */
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  ready(function () {
    /* <select data-autosubmit>: choosing an option submits its form (the organization list's
       province filter; a <noscript> button does it without JavaScript). */
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () {
        if (select.form) select.form.submit();
      });
    });

    /* The donate form: typing an amount deselects the presets; choosing a preset clears the
       typed amount. */
    var form = document.getElementById("donate");
    var custom = form && form.querySelector("#custom_amount");
    if (custom) {
      var presets = form.querySelectorAll('input[name="amount"]');
      custom.addEventListener("input", function () {
        if (custom.value.trim()) presets.forEach(function (r) { r.checked = false; });
      });
      presets.forEach(function (r) {
        r.addEventListener("change", function () {
          custom.value = "";
          custom.removeAttribute("aria-invalid");
        });
      });
    }
  });
})();

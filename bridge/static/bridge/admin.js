// Operator console helpers: copy buttons, and showing only the chosen connector kind's fields.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var input = document.getElementById(button.dataset.copy);
      input.select();
      if (navigator.clipboard) { navigator.clipboard.writeText(input.value).catch(function () {}); }
      else { document.execCommand("copy"); }
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    });
  });
  var kind = document.getElementById("id_kind");
  if (kind && kind.tagName === "SELECT") {
    var show = function () {
      document.querySelectorAll("fieldset.connector-kind").forEach(function (fs) {
        fs.classList.toggle("hb-hidden", !fs.classList.contains("kind-" + kind.value));
      });
    };
    kind.addEventListener("change", show);
    show();
  }
});

// Buttons whose effect reaches a customer ask first (data-confirm on their form).
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
}, true);

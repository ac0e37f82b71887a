/* Review screens: one key per action, no build step. Keys are declared in the page with data-key on the
   element they press (a link is followed, a button clicks its form, a radio is chosen); typing in a text
   field never triggers them, except Enter, which submits that field's form as usual. */
(function () {
  "use strict";

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "TEXTAREA" || tag === "SELECT" || (tag === "INPUT" && !/^(radio|checkbox|submit|button)$/.test(target.type));
  }

  function press(element) {
    if (element.tagName === "A") { window.location.assign(element.href); return; }
    if (element.type === "radio") { element.checked = true; element.focus(); return; }
    element.click();
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    var key = event.key.toLowerCase();
    if (key === "u") {
      var undo = document.getElementById("undo-button");
      if (undo) { event.preventDefault(); undo.click(); }
      return;
    }
    var element = document.querySelector('[data-key="' + key + '"]');
    if (!element || element.disabled) { return; }
    event.preventDefault();
    press(element);
  });

  // The reject button needs a reason: without one, the key points the reviewer at the list.
  var reject = document.getElementById("reject-form");
  if (reject) {
    reject.addEventListener("submit", function (event) {
      var chosen = reject.querySelector('input[name="preset"]:checked');
      var note = reject.querySelector('input[name="note"]');
      if (!chosen && !(note && note.value.trim())) {
        event.preventDefault();
        reject.classList.add("needs-reason");
        var first = reject.querySelector('input[name="preset"]');
        if (first) { first.focus(); }
      }
    });
  }

  // The annotated picture is drawn on demand (it runs the checker again), so only when asked for.
  var toggle = document.getElementById("explain-toggle");
  if (toggle) {
    toggle.addEventListener("click", function () {
      var box = document.getElementById("explain-box");
      var picture = document.getElementById("explain");
      if (!picture.getAttribute("src")) { picture.setAttribute("src", picture.dataset.src); }
      box.hidden = !box.hidden;
      toggle.textContent = box.hidden ? "显示分析图（E）" : "隐藏分析图（E）";
    });
  }

  // The undo countdown; when it ends the verdict is final and the button goes.
  var undoForm = document.getElementById("undo-form");
  if (undoForm) {
    var left = parseInt(undoForm.dataset.seconds, 10);
    var shown = undoForm.querySelector(".countdown");
    var timer = window.setInterval(function () {
      left -= 1;
      if (left <= 0) {
        window.clearInterval(timer);
        undoForm.remove();
        return;
      }
      shown.textContent = String(left);
    }, 1000);
  }
}());

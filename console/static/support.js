// The support desk's candidate page: a canned reply fills the reply box (the agent may edit it before sending).
document.addEventListener("click", function (event) {
  var button = event.target.closest(".canned-reply");
  if (!button) return;
  var box = document.querySelector("#reply textarea[name=text]");
  box.value = button.dataset.text;
  box.focus();
});

// One-time secrets (a new API token, an authenticator key, recovery codes): shown once, so
// each can be copied, and recovery codes also downloaded as a text file or printed.
// Buttons name what they act on: data-copy="ID", data-download="ID", data-print.
import { toast } from "./portal.js";

// The text of the element: one line per list item, else its own text.
function secretText(id) {
  const node = document.getElementById(id);
  const items = node.querySelectorAll("li");
  if (items.length) return Array.from(items, function (li) { return li.textContent.trim(); }).join("\n") + "\n";
  return node.textContent.trim();
}

document.querySelectorAll("[data-copy]").forEach(function (button) {
  button.addEventListener("click", async function () {
    try {
      await navigator.clipboard.writeText(secretText(button.dataset.copy));
      toast("Copied. Paste it where it is kept, then clear the clipboard.");
    } catch (e) {
      // No clipboard (not a secure context, or refused): select it for Ctrl+C instead.
      const range = document.createRange();
      range.selectNodeContents(document.getElementById(button.dataset.copy));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      toast("The clipboard is not available: the text is selected, press Ctrl+C.", "error");
    }
  });
});

document.querySelectorAll("[data-download]").forEach(function (button) {
  button.addEventListener("click", function () {
    // Made here, in the browser: the codes never travel again.
    const blob = new Blob([secretText(button.dataset.download)], { type: "text/plain" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = button.dataset.filename || "secret.txt";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 1000);
  });
});

document.querySelectorAll("[data-print]").forEach(function (button) {
  button.addEventListener("click", function () { window.print(); });
});

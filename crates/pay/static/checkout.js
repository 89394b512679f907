// Gatehouse Pay's checkout in a merchant's page: the only script of the
// payments service, loaded by the framed and popup purchase pages (their
// policy allows scripts from this origin only; nothing inline).
//
// - A link marked `data-popup` opens its page in a popup (a window this
//   script opens, so that the popup may close itself at the end).
// - A page with `#checkout-result` posts the paid purchase's fulfillment URL
//   (with its proof) to the merchant's page, to the fulfillment URL's exact
//   origin and no other: from a frame to its parent, from a popup to the
//   top window of its opener; then a popup closes.
"use strict";

for (const a of document.querySelectorAll("a[data-popup]")) {
  a.addEventListener("click", (event) => {
    const popup = window.open(a.href, "gatehouse-pay", "popup,width=480,height=760");
    if (popup) {
      event.preventDefault();
    }
  });
}

const result = document.getElementById("checkout-result");
if (result) {
  const message = {
    type: "gatehouse-pay:paid",
    contract_hash: result.dataset.hash,
    fulfillment_url: result.dataset.url,
  };
  const origin = result.dataset.origin;
  if (window.opener && !window.opener.closed) {
    window.opener.top.postMessage(message, origin);
    window.close();
  } else if (window.parent !== window) {
    window.parent.postMessage(message, origin);
  }
}

// The shop's embedded checkout (`/offer/{product}?checkout=frame`): the
// purchase page of Gatehouse Pay is framed on the offer page. When it is
// paid, the framed page (or the popup it opened) posts the fulfillment URL
// with its proof here; this script takes it only from the payments
// service's origin and only for this shop's own `/fulfill`, and goes there.
"use strict";

const checkout = document.getElementById("checkout");
if (checkout) {
  const payOrigin = checkout.dataset.payOrigin;
  window.addEventListener("message", (event) => {
    if (event.origin !== payOrigin) {
      return;
    }
    const data = event.data;
    if (!data || data.type !== "gatehouse-pay:paid" || typeof data.fulfillment_url !== "string") {
      return;
    }
    let url;
    try {
      url = new URL(data.fulfillment_url);
    } catch {
      return;
    }
    if (url.origin === window.location.origin && url.pathname === "/fulfill") {
      window.location.assign(url.href);
    }
  });
}

import type { Offer } from "../api";
import { formatPoints, formatShopTime } from "../format";

/** The cross-sell bonus while its window is open; nothing once the deadline has passed. */
export function OfferBanner({ offer }: { offer: Offer | null | undefined }) {
  if (!offer || !(Date.parse(offer.order_before) > Date.now())) return null;
  return (
    <section className="offer" aria-label="Ưu đãi dành cho bạn" data-testid="offer">
      <strong>Ưu đãi dành cho bạn:</strong> Đặt hàng trước {formatShopTime(offer.order_before)} để
      được +{formatPoints(offer.bonus_points)} điểm
    </section>
  );
}

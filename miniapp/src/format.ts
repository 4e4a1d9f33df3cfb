// Numbers and times the Vietnamese way: 1.650.000 ₫, 1.720 điểm, 13:20 26/11.

const VND = new Intl.NumberFormat("vi-VN", {
  style: "currency",
  currency: "VND",
  maximumFractionDigits: 0,
});
const COUNT = new Intl.NumberFormat("vi-VN", { maximumFractionDigits: 0 });

export function formatVnd(amount: number): string {
  return VND.format(amount);
}

export function formatPoints(points: number): string {
  return COUNT.format(points);
}

/** "+1.464" for points added, "-1.464" for points taken back. */
export function formatSignedPoints(points: number): string {
  return points > 0 ? `+${COUNT.format(points)}` : COUNT.format(points);
}

const ISO_LOCAL = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/;

/**
 * "13:20 26/11" (or "13:20 26/11/2026") in the shop's zone. The API writes times with the
 * shop's offset, so its wall-clock part is the shop's time; converting through Date would
 * show the phone's zone instead, which is wrong for a deadline the shop set.
 */
export function formatShopTime(iso: string, withYear = false): string {
  const parts = ISO_LOCAL.exec(iso);
  if (!parts) return iso;
  const [, year, month, day, hour, minute] = parts;
  return `${hour}:${minute} ${day}/${month}${withYear ? `/${year}` : ""}`;
}

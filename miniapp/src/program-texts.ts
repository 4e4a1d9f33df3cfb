import type { Tier } from "./api";

// The four tiers of the default program have their colours; a tier of a shop's own program
// gets a neutral one rather than borrowing another tier's.
const TIER_COLOURS = new Map<string, string>([
  ["member", "#2f6fb5"],
  ["silver", "#7d8a99"],
  ["gold", "#b8860b"],
  ["diamond", "#6a3fc8"],
]);
export const NEUTRAL_TIER_COLOUR = "#3f4654";

export function tierColour(code: string): string {
  return TIER_COLOURS.get(code) ?? NEUTRAL_TIER_COLOUR;
}

export function tierName(tier: Tier): string {
  return tier.name_vi || tier.name || tier.code;
}

const LEDGER_KINDS = new Map<string, string>([
  ["order_credit", "Tích điểm đơn hàng"],
  ["order_reversal", "Trừ điểm do đơn hàng bị hủy hoặc trả lại"],
  ["order_refund", "Trừ điểm do đơn hàng được hoàn tiền"],
  ["crosssell_bonus", "Điểm thưởng đặt hàng sớm"],
  ["crosssell_bonus_reversal", "Thu hồi điểm thưởng do đơn hàng bị hủy hoặc trả lại"],
]);

/** What a ledger row is, in Vietnamese; a kind this page does not know is shown as it is. */
export function ledgerKindLabel(kind: string): string {
  return LEDGER_KINDS.get(kind) ?? kind;
}

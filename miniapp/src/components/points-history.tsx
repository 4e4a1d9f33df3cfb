import type { LedgerEntry } from "../api";
import { formatPoints, formatShopTime, formatSignedPoints } from "../format";
import { ledgerKindLabel } from "../program-texts";

/** The ledger as the API gives it, newest first. */
export function PointsHistory({ entries }: { entries: LedgerEntry[] }) {
  return (
    <section className="panel" aria-labelledby="history">
      <h3 id="history">Lịch sử điểm</h3>
      {entries.length === 0 ? (
        <p className="muted" data-testid="history-empty">
          Bạn chưa có điểm nào. Điểm được cộng khi đơn hàng đã giao và đã thanh toán.
        </p>
      ) : (
        <ol className="history" data-testid="history">
          {entries.map((entry, index) => (
            <li key={index} className="history__row" data-kind={entry.kind}>
              <div className="history__main">
                <div className="history__kind">{ledgerKindLabel(entry.kind)}</div>
                <div className="history__meta">
                  {entry.order_id ? `Đơn ${entry.order_id} · ` : ""}
                  {formatShopTime(entry.created_at, true)}
                </div>
              </div>
              <div className="history__figures">
                <div
                  className={entry.points < 0 ? "history__points minus" : "history__points"}
                  data-testid="history-points"
                >
                  {formatSignedPoints(entry.points)}
                </div>
                <div className="history__balance">Số dư {formatPoints(entry.balance_after)}</div>
              </div>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

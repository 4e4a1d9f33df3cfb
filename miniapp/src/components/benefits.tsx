import type { MemberView } from "../api";
import { tierName } from "../program-texts";

export function Benefits({ member }: { member: MemberView }) {
  const held = new Set(member.benefits);
  // What the next tier adds; what it shares with this one is already listed above.
  const unlocking = member.next_tier_benefits.filter((benefit) => !held.has(benefit));
  return (
    <>
      <section className="panel" aria-labelledby="benefits-held">
        <h3 id="benefits-held">Quyền lợi của bạn</h3>
        {member.benefits.length > 0 ? (
          <ul className="benefits" data-testid="benefits">
            {member.benefits.map((benefit) => (
              <li key={benefit}>{benefit}</li>
            ))}
          </ul>
        ) : (
          <p className="muted">Hạng này chưa có quyền lợi riêng.</p>
        )}
      </section>
      {member.next_tier && unlocking.length > 0 && (
        <section className="panel" aria-labelledby="benefits-next">
          <h3 id="benefits-next">Sắp mở khóa ở hạng {tierName(member.next_tier)}</h3>
          <ul className="benefits benefits--locked" data-testid="next-tier-benefits">
            {unlocking.map((benefit) => (
              <li key={benefit}>{benefit}</li>
            ))}
          </ul>
        </section>
      )}
    </>
  );
}

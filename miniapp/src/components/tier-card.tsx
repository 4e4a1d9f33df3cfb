import { Progress } from "zmp-ui";

import type { MemberView } from "../api";
import { formatPoints, formatVnd } from "../format";
import { tierColour, tierName } from "../program-texts";

export function TierCard({ member }: { member: MemberView }) {
  const colour = tierColour(member.tier.code);
  return (
    <section
      className="tier-card"
      data-tier={member.tier.code}
      style={{ backgroundColor: colour }}
      aria-label="Hạng của bạn"
    >
      <div className="tier-card__label">Hạng của bạn</div>
      <h2 className="tier-card__name">{tierName(member.tier)}</h2>
      <div className="tier-card__figures">
        <div>
          <div className="tier-card__figure" data-testid="points">
            {formatPoints(member.points)} điểm
          </div>
          <div className="tier-card__caption">Điểm hạng</div>
        </div>
        <div>
          <div className="tier-card__figure" data-testid="total-spent">
            {formatVnd(member.total_spent)}
          </div>
          <div className="tier-card__caption">Đã chi tiêu</div>
        </div>
      </div>
      <NextTier member={member} />
    </section>
  );
}

function NextTier({ member }: { member: MemberView }) {
  const next = member.next_tier;
  if (next === null || member.points_to_next_tier === null) {
    return (
      <p className="tier-card__progress-text" data-testid="top-tier">
        Bạn đang ở hạng cao nhất. Cảm ơn bạn đã luôn đồng hành!
      </p>
    );
  }
  // Progress within the current tier's band, so a new tier starts from an empty bar.
  const floor = member.tier.threshold ?? 0;
  const span = Math.max((next.threshold ?? member.points + member.points_to_next_tier) - floor, 1);
  const done = Math.min(Math.max(member.points - floor, 0), span);
  return (
    <div className="tier-card__progress">
      <div
        role="progressbar"
        aria-label={`Tiến độ lên hạng ${tierName(next)}`}
        aria-valuemin={0}
        aria-valuemax={span}
        aria-valuenow={done}
      >
        <Progress
          completed={done}
          maxCompleted={span}
          strokeWidth={8}
          strokeColor="#ffffff"
          trailColor="rgba(255, 255, 255, 0.3)"
        />
      </div>
      <p className="tier-card__progress-text" data-testid="to-next-tier">
        Bạn còn {formatPoints(member.points_to_next_tier)} điểm để lên hạng{" "}
        <strong>{tierName(next)}</strong>
        {member.spend_to_next_tier !== null && (
          <> (chi tiêu thêm khoảng {formatVnd(member.spend_to_next_tier)})</>
        )}
        .
      </p>
    </div>
  );
}

package server

import "github.com/extauthz/extauthz/pkg/insight"

// insightOutcomes maps metric outcomes to insight's.
var insightOutcomes = [numOutcomes]insight.Outcome{
	outcomeOK:        insight.Admitted,
	outcomeNearLimit: insight.NearLimit,
	outcomeOverLimit: insight.Refused,
	outcomeShadow:    insight.Shadow,
}

// recordInsight records a decided, counted verdict of snap with traffic insight
// (when Options.Insight is set); refused is whether the verdicts refused
// the request. A quota-mode descriptor over its limit in a request that
// was admitted (another quota descriptor had room) is recorded as near
// its limit, not refused: its client was served.
func (s *Server) recordInsight(snap *Snapshot, v *verdict, refused bool) {
	if s.insight == nil {
		return
	}
	o := outcomeOf(v, snap.settings.NearLimitRatio)
	if o == outcomeOverLimit && !refused {
		o = outcomeNearLimit
	}
	s.insight.Record(v.rule, v.desc, insightOutcomes[o], v.hits, snap.rules.Identities())
}

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
// (when Options.Insight is set).
func (s *Server) recordInsight(snap *Snapshot, v *verdict) {
	if s.insight == nil {
		return
	}
	s.insight.Record(v.rule, v.desc, insightOutcomes[outcomeOf(v, snap.settings.NearLimitRatio)], v.hits, snap.rules.Identities())
}

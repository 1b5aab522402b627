-- Version 2: take_one, take for a call of one request (the common case: one
-- descriptor), which Take sends instead of take's arrays. It decides exactly
-- as take does for one request (TestMatchesLimiterModel checks both against
-- pkg/limiter), with plain statements on the one key instead of take's
-- unnest, window function and array aggregates: about 2.5 times less
-- database time per call (BENCHMARKS.md). It only adds: a build of version
-- 1 serves this schema as it is.
-- compatible_from: 1
CREATE FUNCTION {{schema}}.take_one(
	p_key bytea, p_alg int, p_requests bigint, p_period bigint,
	p_burst bigint, p_hits bigint, p_shadow boolean, p_mode int, p_now bigint,
	OUT allowed boolean, OUT remaining bigint, OUT reset_after bigint,
	OUT retry_after bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	v_now bigint;
	v_stamp bigint := 0;
	v_count bigint := 0;
	v_prev bigint := 0;
	v_exp bigint;
	r record;
BEGIN
	-- Lock the key's row, inserting an expired placeholder when it has
	-- none (as take does), then read the clock and the live state.
	INSERT INTO {{schema}}.counters AS c (key, stamp, count, prev, expires_at)
	VALUES (p_key, 0, 0, 0, 0)
	ON CONFLICT (key) DO UPDATE SET expires_at = c.expires_at WHERE false;
	v_now := coalesce(p_now, {{schema}}.now_ns());
	SELECT c.stamp, c.count, c.prev, c.expires_at INTO v_stamp, v_count, v_prev, v_exp
	FROM {{schema}}.counters AS c WHERE c.key = p_key;
	IF v_exp <= v_now THEN
		v_stamp := 0;
		v_count := 0;
		v_prev := 0;
	END IF;

	r := {{schema}}.apply(p_alg, p_requests, p_period, p_burst, p_hits, v_now, v_stamp, v_count, v_prev);
	allowed := r.allowed;
	remaining := r.remaining;
	reset_after := r.reset_after;
	retry_after := r.retry_after;
	IF p_mode = 1 AND NOT (r.allowed OR p_shadow) THEN
		-- Nothing is counted: Remaining and ResetAfter as a read would
		-- give them (take's CountIfAllAllowed).
		r := {{schema}}.apply(p_alg, p_requests, p_period, p_burst, 0, v_now, v_stamp, v_count, v_prev);
		remaining := r.remaining;
		reset_after := r.reset_after;
		RETURN;
	END IF;
	IF r.wrote THEN
		UPDATE {{schema}}.counters AS c
		SET stamp = r.stamp, count = r.cnt, prev = r.prv,
			expires_at = {{schema}}.expiry(p_alg, p_period, r.stamp)
		WHERE c.key = p_key;
	END IF;
END
$$;

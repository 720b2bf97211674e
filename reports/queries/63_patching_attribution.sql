-- section: Causal interventions
-- title: Attribution patching against exact patching, per hook
-- note: Pearson r over the same (layer, position) or (layer, head) sites, denoising, between the gradient estimate (a_clean - a_corrupted) . dLD/da and the exact patch. Low r marks where the linear approximation fails (saturated attention, the final norm).
select e.model, e.task, e.hook, count(*) as sites, round(corr(a.effect, e.effect), 3) as pearson_r,
       round(max(abs(a.effect - e.effect)), 3) as max_abs_diff
from patching e
join patching a on a.model = e.model and a.task = e.task and a.hook = e.hook and a.layer = e.layer
  and a.pos is not distinct from e.pos and a.head is not distinct from e.head
  and a.method = 'attribution' and a.mode = e.mode
where e.method = 'activation' and e.mode = 'denoising' and e.direction is null
group by all order by e.model, e.task, e.hook

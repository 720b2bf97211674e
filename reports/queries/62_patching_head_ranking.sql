-- section: Causal interventions
-- title: Heads ranked by patching at the final position, beside their attention-pattern scores
-- note: The known answer on the toy model: the heads that matter most at the final position are the ones with the highest prefix-matching score (computed independently, from attention patterns on random repeated segments); mean-ablating the previous-token head removes most of the clean logit difference.
select p.model, p.task, p.layer, p.head, round(p.effect, 3) as patched_effect,
       round(a.logit_diff / a.clean_logit_diff, 3) as ablated_ld_fraction,
       round(p.prefix_matching, 3) as prefix_matching, round(p.previous_token, 3) as previous_token
from patching p
join patching a on a.model = p.model and a.task = p.task and a.layer = p.layer and a.head = p.head
  and a.method = 'activation' and a.mode = 'mean_ablation'
where p.method = 'activation' and p.mode = 'denoising' and p.hook = 'attn_z' and p.pos is not null
order by p.model, p.task, p.effect desc

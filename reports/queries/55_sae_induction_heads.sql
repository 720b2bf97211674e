-- section: Sparse autoencoders
-- title: The toy's attention SAE: latents of the second copy and the heads they come from
-- chart: table
-- note: The ten latents of toy-attn1-z most active on the second copy of a repeated segment against the first copy of the same documents (mean activation over positions L+1..2L minus the mean over 1..L, L the document's repeat_length, on held-out documents). A latent of the first-token head fires alike on both copies and drops out; an induction latent fires on the second only. Their decoder-norm share per layer-1 head averaged over those latents, beside each head's prefix-matching and first-token score from train_toy (toy_heads). An induction latent should come mostly from the best prefix-matching heads.
with copies as (
    select t.doc_id, t.pos, t.pos > cast(d.labels['repeat_length'] as integer) as second
    from tokens t
    join documents d on d.model = t.model and d.dataset = t.dataset and d.doc_id = t.doc_id
    where t.model = 'toy' and t.dataset = 'repeats'
      and t.pos between 1 and 2 * cast(d.labels['repeat_length'] as integer)
), counts as (
    select count(*) filter (where second) as n_second, count(*) filter (where not second) as n_first
    from copies where doc_id in (select distinct doc_id from sae_features where sae_id = 'toy-attn1-z')
), per_feature as (
    select f.feature,
           sum(f.value) filter (where c.second) as s_second,
           sum(f.value) filter (where not c.second) as s_first
    from sae_features f join copies c on c.doc_id = f.doc_id and c.pos = f.pos
    where f.sae_id = 'toy-attn1-z' and f.dataset = 'repeats'
    group by f.feature
), top as (
    select feature
    from per_feature, counts
    order by coalesce(s_second, 0) / n_second - coalesce(s_first, 0) / n_first desc, feature
    limit 10
)
select h.head, round(avg(h.norm_frac), 4) as share, round(any_value(th.prefix_matching), 4) as prefix_matching,
       round(any_value(th.first_token), 4) as first_token
from sae_heads h
join top using (feature)
join toy_heads th on th.model = 'toy' and th.layer = 1 and th.head = h.head
where h.sae_id = 'toy-attn1-z'
group by h.head
order by share desc

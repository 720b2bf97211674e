-- section: Sparse autoencoders
-- title: The toy's attention SAE: latents of the second copy and the heads they come from
-- chart: table
-- note: The ten latents of toy-attn1-z with the most activation on tokens of a later copy of a repeated segment (the word L positions back is the same, L the document's repeat_length), their decoder-norm share per layer-1 head averaged over those latents, and each head's prefix-matching score from train_toy (toy_heads). An induction latent should come mostly from the best prefix-matching head(s).
with later as (
    select t.doc_id, t.pos
    from tokens t
    join documents d on d.model = t.model and d.dataset = t.dataset and d.doc_id = t.doc_id
    join tokens p on p.model = t.model and p.dataset = t.dataset and p.doc_id = t.doc_id
         and p.pos = t.pos - cast(d.labels['repeat_length'] as integer) and p.token = t.token
    where t.model = 'toy' and t.dataset = 'repeats'
), top as (
    select f.feature, sum(f.value) as activation
    from sae_features f join later l on l.doc_id = f.doc_id and l.pos = f.pos
    where f.sae_id = 'toy-attn1-z' and f.dataset = 'repeats'
    group by f.feature order by activation desc limit 10
)
select h.head, round(avg(h.norm_frac), 4) as share, round(any_value(th.prefix_matching), 4) as prefix_matching
from sae_heads h
join top using (feature)
join toy_heads th on th.model = 'toy' and th.layer = 1 and th.head = h.head
where h.sae_id = 'toy-attn1-z'
group by h.head
order by share desc

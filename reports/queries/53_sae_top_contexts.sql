-- section: Sparse autoencoders
-- title: Top contexts of the MiniLM SAE's three most frequent latents
-- chart: table
-- note: For the minilm-l3-topk SAE, the held-out tokens on which each of its three most often active latents fires hardest, with the token and its document; edit the sae_id to read another SAE.
with frequent as (
    select feature from sae_features where sae_id = 'minilm-l3-topk'
    group by feature order by count(*) desc, feature limit 3
), ranked as (
    select f.feature, f.doc_id, f.pos, f.value,
           row_number() over (partition by f.feature order by f.value desc) as rank
    from sae_features f join frequent using (feature)
    where f.sae_id = 'minilm-l3-topk'
)
select r.feature, r.rank, t.token, round(r.value, 3) as value, d.text
from ranked r
join tokens t on t.model = 'minilm' and t.dataset = 'corpus' and t.doc_id = r.doc_id and t.pos = r.pos
join documents d on d.model = 'minilm' and d.dataset = 'corpus' and d.doc_id = r.doc_id
where r.rank <= 4
order by r.feature, r.rank

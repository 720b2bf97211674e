-- section: Brain alignment
-- title: Normalised encoding score per layer: trained vs random-init model, per region
-- chart: line x=layer y=score series=curve facet=panel
-- note: Cross-validated ridge encoding models (held-out passages) predict each neuroid's mean response from a layer's mean-pooled features; the score is the median over the region's neuroids of r / noise ceiling (split-half reliability across repetitions, Spearman-Brown corrected), clipped into [0, 1]. "random init" is the same architecture with seeded random weights. The dotted level is the 95th percentile of the same median under 100 within-passage permutations of the responses (trained model): scores above it have p < 0.05 (the p-values are in the table below).
with scored as (
  select model, subject, roi, init, layer, r_normalized, null_normalized_q95
  from brain_layers where features = 'activations' and hook = 'resid_post'
)
select model || ' / ' || subject || ' / ' || roi as panel,
       case init when 'trained' then 'trained' else 'random init' end as curve, layer, r_normalized as score
from scored
union all
select model || ' / ' || subject || ' / ' || roi, 'permutation null, 95th pct (trained)', layer, null_normalized_q95
from scored where init = 'trained' and null_normalized_q95 is not null
order by panel, curve, layer

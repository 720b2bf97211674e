-- section: Brain alignment
-- title: Raw held-out r per layer beside the noise ceiling
-- chart: line x=layer y=r series=curve facet=panel
-- note: The same encoding models before normalisation: the median held-out Pearson r over each region's neuroids, and the median noise ceiling (the r a model predicting the noiseless response would reach). Regions differ in ceiling because their responses differ in noise.
with scored as (
  select model, subject, roi, init, layer, r, ceiling
  from brain_layers where features = 'activations' and hook = 'resid_post'
)
select model || ' / ' || subject || ' / ' || roi as panel,
       case init when 'trained' then 'r, trained' else 'r, random init' end as curve, layer, r
from scored
union all
select model || ' / ' || subject || ' / ' || roi, 'noise ceiling', layer, ceiling
from scored where init = 'trained' and ceiling is not null
order by panel, curve, layer

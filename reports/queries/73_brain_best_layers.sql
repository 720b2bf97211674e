-- section: Brain alignment
-- title: Best layer per region: normalised score, raw r, ceiling and p-value, trained vs random init
-- note: The layer with the highest normalised score for each model, initialisation, feature space (activations, or an SAE's latents) and region; r_normalized is clipped into [0, 1], clipped says whether the median was. The gap is the trained model's best score minus its random-init copy's.
with best as (
  select model, init, features, subject, roi,
         arg_max(layer, r_normalized) as best_layer, max(r_normalized) as r_normalized,
         arg_max(r, r_normalized) as r, arg_max(ceiling, r_normalized) as ceiling,
         arg_max(p_value, r_normalized) as p_value, arg_max(clipped, r_normalized) as clipped
  from brain_layers group by model, init, features, subject, roi
)
select b.model, b.subject, b.roi, b.init, b.features, b.best_layer, round(b.r_normalized, 3) as r_normalized,
       round(b.r, 3) as r, round(b.ceiling, 3) as ceiling, round(b.p_value, 4) as p_value, b.clipped,
       round(b.r_normalized - c.r_normalized, 3) as gap_vs_random
from best b
left join best c on c.model = b.model and c.subject = b.subject and c.roi = b.roi and c.init = 'random'
  and c.features = 'activations' and b.init = 'trained'
order by b.model, b.subject, b.roi, b.init desc, b.features
